// What the parser tests share: seeds for the fuzzers, and the assertions
// "refused with this rule" and "accepted".
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "stfs/format/safetensors.hpp"
#include "stfs/namespace/names.hpp"

namespace stfs::test {

// With the environment variable `env` naming a folder, writes `bytes`
// there, to seed a fuzzer (scripts/fuzz.sh).
inline void maybe_dump_seed(const std::string& bytes, const char* env) {
  const char* dir = std::getenv(env);
  if (!dir || !*dir || bytes.size() > (1u << 20)) return;
  char name[32];
  std::snprintf(name, sizeof name, "/unit-%016llx",
                static_cast<unsigned long long>(fnv1a64(bytes)));
  std::ofstream(std::string(dir) + name, std::ios::binary) << bytes;
}

// `r` failed with `rule`, and its message holds `needle`.
inline ::testing::AssertionResult refused_with(const Result<Header, ParseError>& r, Rule rule,
                                               std::string_view needle = "") {
  if (r) return ::testing::AssertionFailure() << "accepted, expected " << rule_name(rule);
  if (r.error().rule != rule) {
    return ::testing::AssertionFailure() << "rule " << rule_name(r.error().rule) << " ("
                                         << r.error().message << "), expected " << rule_name(rule);
  }
  if (r.error().message.find(needle) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message `" << r.error().message << "` lacks `" << needle << "`";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace stfs::test
