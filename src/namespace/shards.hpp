// Sharded checkpoints: the merged view of an X.safetensors.index.json.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "tree_builder.hpp"

namespace stfs {

// Adds the merged directory of index file `index` (source `index_src`, read
// from its open fd; in folder `path`, whose
// entries are `siblings`, whose valid shards are `models`: file name ->
// source) under `dir`. The directory is named X.safetensors after the index
// X.safetensors.index.json, or X.safetensors.merged when the folder already
// has an X.safetensors. It holds __metadata__.json (the index's "metadata",
// {} without one) and every tensor of "weight_map" that its shard holds.
// A tensor whose shard is missing or invalid, that its shard lacks, or that
// two shards of the index both hold is left out with a warning: never
// served from the wrong place. With -o packed it also adds
// __packed__/X.safetensors (created in `packed_dir` on first use): the same
// tensors as one valid safetensors file, read in place from the shards.
void add_merged_view(TreeBuilder& b, TreeBuilder::Id dir, const std::string& path,
                     const std::string& index, std::uint32_t index_src,
                     const std::vector<std::string>& siblings,
                     const std::map<std::string, std::uint32_t>& models,
                     TreeBuilder::Id& packed_dir);

}  // namespace stfs
