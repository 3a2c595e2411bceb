// `stfs --check FILE...`: validate files and print one verdict line each.
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "stfs/format/safetensors.hpp"

namespace stfs {

// Prints "OK <file>: <n> tensors (<dtypes>)" or "INVALID <file>: <reason>"
// to `out` for each file. Returns 0 if all are valid, 2 otherwise.
int run_check(const std::vector<std::string>& files, std::FILE* out, const Limits& limits = {});

}  // namespace stfs
