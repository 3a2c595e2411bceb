// Loading a mount's source: the first tree, the trees of later rebuilds,
// and how often the source is compared for changes. The daemon's
// lifecycle (daemon.cpp) calls these; the namespace layer builds the trees.
#pragma once

#include <memory>
#include <optional>

#include "stfs/mount/filesystem.hpp"
#include "stfs/mount/options.hpp"

namespace stfs {

// Opens and validates the source and builds the filesystem; exit code 2
// for an invalid or missing source, 3 for one that cannot be read.
// `polled`: the source will be compared for changes every few seconds.
int load(const MountOptions& o, bool polled, std::unique_ptr<Filesystem>& out);

// The next tree of a changed source, or nullopt (with a warning) when what
// is there now cannot be served: the old tree then stays.
std::optional<Tree> rebuild_tree(const MountOptions& o, bool folder, const Tree& previous);

// How often to compare the source for changes: -o poll=, else 5 s on
// network and FUSE filesystems (inotify never hears other clients there),
// else never (inotify does it for a folder; a local file source is served
// as it was at mount time).
unsigned poll_seconds(const MountOptions& o);

}  // namespace stfs
