// Mount options: the command line of a mount, parsed and checked before
// anything is opened (DESIGN.md §1).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stfs/base/result.hpp"
#include "stfs/format/safetensors.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {

struct MountOptions {
  std::string source;            // canonical once run_mount has checked it
  std::string source_as_given;   // absolute, links kept (the access rule walks them)
  std::string mountpoint;
  bool foreground = false;     // -f
  bool debug = false;          // -d (implies -f)
  bool single_thread = false;  // -s
  bool verbose = false;        // -v
  bool rw_requested = false;   // "rw" was given; the mount is read-only anyway
  bool helper = false;         // run as mount.stfs / mount.fuse.stfs
  bool fake = false;           // mount helper -f: validate everything, mount nothing
  bool sloppy = false;         // mount helper -s: unknown -o options are warnings
  bool auto_unmount = false;   // -o auto_unmount: unmount when the daemon dies, however
  unsigned threads = 8;        // -o threads=N: most worker threads of the loop
  // -o busy_poll_us=N: how long a loop thread that just answered polls
  // /dev/fuse before it sleeps (0: never; device_poll.hpp says why).
  unsigned busy_poll_us = 1000;
  // -o read_ahead_kb=N|off: the mount's readahead when running as root.
  std::optional<unsigned> read_ahead_kb = 1024;
  // -o read_path=auto|mmap|pread: how source bytes are served, and
  // -o source_cache=drop|keep: once a READ is answered, drop the source's
  // own cached copy of those bytes (the mount's page cache holds them
  // now). Both are the source layer's to apply (model.hpp).
  SourcePolicy source_policy;
  bool source_cache_given = false;  // -o source_cache= was given
  // -o direct_io: files served from sources bypass the mount's page cache;
  // each READ is copied straight into the reader's buffer (one copy, not
  // two). Faster first reads, slower re-reads, and shared mappings need
  // libfuse >= 3.16 (README's option table; DECISIONS.md says why it is off
  // by default).
  bool direct_io = false;
  // -o poll=SECONDS: how often a folder source is compared for changes
  // (0: never). Unset: 5 s on network and FUSE filesystems, where inotify
  // is blind to other clients; inotify alone on local ones.
  std::optional<unsigned> poll;
  AttrOptions attr;    // -o uid=, gid=, umask=
  // -o npy, tree, f32, packed; a folder keeps its model files as files
  // (the loader layout) unless -o model_dirs.
  ViewOptions views{.originals = true};
  Limits limits;       // -o max_header=, max_tensors=
  std::string fsname;  // -o fsname= (default: the source path)
  // The daemon's confinement once mounted (sandbox.hpp): -o sandbox=on|off,
  // -o user=NAME (serve as that user), -o sandbox_read=DIR (repeatable:
  // more folders a rebuild may read, beyond the source and its links).
  bool sandbox = true;
  bool sandbox_test = false;  // stfs --sandbox-test SOURCE: no mount
  // Once confined: where rebuilds may read (the sandbox plan's paths).
  std::vector<std::string> confined_to;
  std::string run_as;
  std::vector<std::string> sandbox_read;
  // FUSE and mount options handed to libfuse as they are (allow_other...).
  std::vector<std::string> fuse_options;
  // Options accepted but ignored, for -v to report.
  std::vector<std::string> dropped;
  // Unknown options ignored under sloppy mode; each gets a warning.
  std::vector<std::string> unknown;
  // The program this mount was started from (/proc/self/exe, read at
  // start) and its arguments as given: what a takeover runs again.
  std::string exe;
  std::vector<std::string> argv;
};

// Applies one comma-separated -o list. Fails (EINVAL) on an unknown or
// malformed option, naming it; with opts.sloppy an unknown option is only
// recorded in opts.dropped (malformed known options still fail).
Result<void> apply_mount_options(std::string_view list, MountOptions& opts);

// The source policy in force: with -o direct_io and no source_cache= given,
// keep (the source's cache is then the only copy; dropping it would send
// every re-read to the disk).
SourcePolicy effective_source_policy(const MountOptions& opts);

// -o max_read=N, which libfuse needs again at INIT (it refuses a session
// whose init() asks for another size); 0 when not given.
unsigned fuse_max_read(const MountOptions& opts);

// The -o list handed to the kernel mount: read-only and the rest that
// every stfs mount has, fsname (commas escaped), then the FUSE options
// given.
std::string kernel_mount_options(const MountOptions& opts);

// The help text for -o options, for --help.
std::string_view mount_options_help();

}  // namespace stfs
