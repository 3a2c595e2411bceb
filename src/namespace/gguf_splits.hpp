// Models split by llama.cpp's gguf-split: one merged directory per split.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tree_builder.hpp"

namespace stfs {

// For every complete or partial split in folder `path` (its entries
// `siblings`, its valid GGUF models `models`: file name -> source): files
// named X-00001-of-00003.gguf whose `split.no`, `split.count` and
// `split.tensors.count` agree with their names and with each other. Adds
// under `dir` one directory of every tensor of the split, each read straight
// from its part: X.gguf.d in the loader layout, X.gguf with -o model_dirs
// (X.gguf.merged when the folder has a file of that name), holding the first
// part's __metadata__.json. A part that is missing, invalid or whose counts
// disagree, and a tensor that two parts hold, are left out with a warning:
// never served from the wrong place. The parts stay visible on their own.
void add_gguf_split_views(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                          const std::vector<std::string>& siblings,
                          const std::map<std::string, std::uint32_t>& models);

// "X-00002-of-00003.gguf" -> {"X", 2, 3}; false for other names.
bool parse_split_name(std::string_view name, std::string& prefix, unsigned& no, unsigned& count);

}  // namespace stfs
