// -o option parsing. Options are split on commas; a backslash escapes a
// comma inside a value (as libfuse does).
#include "stfs/mount/options.hpp"

#include <cerrno>
#include <charconv>
#include <cstdlib>

namespace stfs {
namespace {

std::vector<std::string> split_options(std::string_view list) {
  std::vector<std::string> out;
  std::string cur;
  for (std::size_t i = 0; i < list.size(); ++i) {
    char c = list[i];
    if (c == '\\' && i + 1 < list.size()) {
      cur += list[++i];
    } else if (c == ',') {
      if (!cur.empty()) out.push_back(std::move(cur));
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

template <typename T>
bool parse_number(std::string_view s, T& out, int base = 10) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out, base);
  return ec == std::errc() && p == s.data() + s.size();
}

Error bad(std::string_view opt, std::string_view why) {
  return Error{EINVAL, "invalid mount option '" + std::string(opt) + "': " + std::string(why)};
}

}  // namespace

Result<void> apply_mount_options(std::string_view list, MountOptions& o) {
  for (const std::string& opt : split_options(list)) {
    std::string_view key = opt, value;
    bool has_value = false;
    if (auto eq = opt.find('='); eq != std::string::npos) {
      key = std::string_view(opt).substr(0, eq);
      value = std::string_view(opt).substr(eq + 1);
      has_value = true;
    }
    // stfs's own options.
    if (key == "max_tensors" || key == "max_header" || key == "threads") {
      std::uint64_t n = 0;
      if (!has_value || !parse_number(value, n)) return unexpected(bad(opt, "expected a number"));
      if (key == "max_tensors") o.limits.max_tensors = n;
      if (key == "max_header") o.limits.max_header = n;
      if (key == "threads") {
        if (n < 1 || n > 256) return unexpected(bad(opt, "expected 1 to 256"));
        o.threads = static_cast<unsigned>(n);
      }
    } else if (key == "busy_poll_us") {
      unsigned n = 0;
      if (!has_value || !parse_number(value, n) || n > 1000000) {
        return unexpected(bad(opt, "expected 0 to 1000000 (microseconds)"));
      }
      o.busy_poll_us = n;
    } else if (key == "read_ahead_kb") {
      unsigned n = 0;
      if (value == "off") {
        o.read_ahead_kb.reset();
      } else if (has_value && parse_number(value, n) && n > 0 && n <= 65536) {
        o.read_ahead_kb = n;
      } else {
        return unexpected(bad(opt, "expected 1 to 65536, or off"));
      }
    } else if (key == "read_path") {
      if (value == "auto") {
        o.source_policy.read_path = ReadPath::kAuto;
      } else if (value == "mmap") {
        o.source_policy.read_path = ReadPath::kMmap;
      } else if (value == "pread") {
        o.source_policy.read_path = ReadPath::kPread;
      } else {
        return unexpected(bad(opt, "expected auto, mmap or pread"));
      }
    } else if (key == "source_cache") {
      o.source_cache_given = true;
      if (value == "drop") {
        o.source_policy.drop_cache = true;
      } else if (value == "keep") {
        o.source_policy.drop_cache = false;
      } else {
        return unexpected(bad(opt, "expected drop or keep"));
      }
    } else if (key == "poll") {
      unsigned n = 0;
      if (!has_value || !parse_number(value, n) || n > 86400) {
        return unexpected(bad(opt, "expected seconds, 0 to 86400"));
      }
      o.poll = n;
    } else if (key == "uid" || key == "gid") {
      unsigned n = 0;
      if (!has_value || !parse_number(value, n)) return unexpected(bad(opt, "expected a number"));
      if (key == "uid") o.attr.uid = n;
      if (key == "gid") o.attr.gid = n;
    } else if (key == "umask") {
      unsigned n = 0;
      if (!has_value || !parse_number(value, n, 8) || n > 0777) {
        return unexpected(bad(opt, "expected an octal mode"));
      }
      o.attr.umask = static_cast<mode_t>(n);
    } else if (key == "sandbox") {
      if (value != "on" && value != "off") return unexpected(bad(opt, "expected on or off"));
      o.sandbox = value == "on";
    } else if (key == "user" && has_value) {
      if (value.empty()) return unexpected(bad(opt, "expected a user name or number"));
      o.run_as = std::string(value);
    } else if (key == "sandbox_read") {
      if (!value.starts_with("/")) return unexpected(bad(opt, "expected an absolute folder"));
      o.sandbox_read.emplace_back(value);
    } else if (key == "fsname") {
      if (value.empty()) return unexpected(bad(opt, "expected a name"));
      o.fsname = std::string(value);
    } else if (opt == "npy") {
      o.views.npy = true;
    } else if (opt == "tree") {
      o.views.tree = true;
    } else if (opt == "f32") {
      o.views.f32 = true;
    } else if (opt == "packed") {
      o.views.packed = true;
    } else if (opt == "originals") {
      o.views.originals = true;  // the default since folders load; kept for old command lines
    } else if (opt == "model_dirs") {
      o.views.originals = false;
    } else if (opt == "direct_io") {
      o.direct_io = true;
    } else if (opt == "rw") {
      // mount(8) hands helpers "rw" by default; the mount stays read-only.
      o.rw_requested = true;
    } else if (opt == "debug") {
      o.debug = o.foreground = true;
    } else if (opt == "ro" || opt == "default_permissions" || opt == "nodev" || opt == "nosuid" ||
               key == "subtype") {
      o.dropped.push_back(opt);  // always in force
    } else if (opt == "auto_unmount") {
      o.auto_unmount = true;  // done by stfs itself (supervisor.hpp)
    } else if (opt == "allow_other" || opt == "allow_root" ||
               opt == "exec" || opt == "noexec" || opt == "atime" || opt == "noatime" ||
               opt == "sync" || opt == "async" || opt == "dirsync" || key == "max_read") {
      o.fuse_options.push_back(opt);
    } else if (opt == "dev" || opt == "suid") {
      o.dropped.push_back(opt);  // nodev and nosuid are forced
    } else if (opt == "defaults" || opt == "auto" || opt == "noauto" || opt == "nofail" ||
               opt == "_netdev" || opt == "user" || opt == "users" || opt == "nouser" ||
               opt == "owner" || opt == "group" || key == "comment" || opt.starts_with("x-") ||
               opt.starts_with("X-") || opt == "relatime" || opt == "strictatime" ||
               opt == "nodiratime" || opt == "lazytime") {
      // mount(8)'s own words, and atime modes libfuse 3.14 refuses.
      o.dropped.push_back(opt);
    } else if (o.sloppy) {
      o.unknown.push_back(opt);
    } else {
      return unexpected(Error{EINVAL, "unknown mount option '" + opt + "'"});
    }
  }
  return {};
}

SourcePolicy effective_source_policy(const MountOptions& opts) {
  SourcePolicy p = opts.source_policy;
  if (opts.direct_io && !opts.source_cache_given) p.drop_cache = false;
  return p;
}

unsigned fuse_max_read(const MountOptions& opts) {
  unsigned v = 0;
  for (const std::string& o : opts.fuse_options) {
    // The last one given, its leading digits, as libfuse reads it ("%u").
    if (o.starts_with("max_read=")) {
      v = static_cast<unsigned>(std::strtoul(o.c_str() + 9, nullptr, 10));
    }
  }
  return v;
}

std::string kernel_mount_options(const MountOptions& opts) {
  // libfuse splits -o lists on commas; a backslash protects one.
  std::string o = "ro,nodev,nosuid,default_permissions,subtype=stfs,fsname=";
  for (char c : opts.fsname.empty() ? opts.source : opts.fsname) {
    if (c == ',' || c == '\\') o += '\\';
    o += c;
  }
  for (const std::string& extra : opts.fuse_options) o += "," + extra;
  return o;
}

std::string_view mount_options_help() {
  return "Mount options (-o, comma-separated):\n"
         "  allow_other          let other users in (modes still come from the source)\n"
         "  allow_root           let root in\n"
         "  auto_unmount         unmount when the daemon dies\n"
         "  uid=N, gid=N         owner and group of every file (default: the source's)\n"
         "  umask=OOO            clear these mode bits on every file\n"
         "  fsname=NAME          device name shown by mount (default: the source path)\n"
         "  npy                  add __npy__/<tensor>.npy files that numpy.load opens\n"
         "  tree                 dotted tensor names as nested directories\n"
         "  packed               add __packed__/<X>.safetensors beside each\n"
         "                       <X>.safetensors.index.json of a folder source: the\n"
         "                       shards as one valid safetensors file, read in place\n"
         "                       (for loaders that want one file); a single-file source\n"
         "                       has no packed view\n"
         "  f32                  add __f32__/<tensor>: every floating tensor as float32\n"
         "  model_dirs           folder sources: every valid <X>.safetensors (and <X>.gguf)\n"
         "                       becomes a directory of its tensors at its own name.\n"
         "                       Without it (the default) each stays a file at its own\n"
         "                       name, byte for byte the source (its validated header,\n"
         "                       then its data in place), so loaders, sha256sum and cp\n"
         "                       see the model; its tensors are beside it in\n"
         "                       <X>.safetensors.d/ (<X>.gguf.d/), and source entries\n"
         "                       named so are left out. (originals: the default, accepted)\n"
         "  threads=N            source reads served at once (default 8); the loop keeps\n"
         "                       2 more threads that never wait on a source, and reads\n"
         "                       past N wait in a queue, so a stalled source never\n"
         "                       stops lookups, listings or the JSON files\n"
         "  read_path=auto|mmap|pread\n"
         "                       serve bytes from a shared mapping (local filesystems)\n"
         "                       or with pread (network and FUSE sources, where a\n"
         "                       mapping is refused or slow); auto picks by filesystem\n"
         "                       (default auto)\n"
         "  source_cache=drop|keep\n"
         "                       drop: once a read is answered, drop the source's own\n"
         "                       cached pages of those bytes, so each byte is cached\n"
         "                       once (in the mount), not twice (default); keep: leave\n"
         "                       them, for machines where other programs read the same\n"
         "                       source files natively at the same time\n"
         "  direct_io            files read from sources skip the mount's page cache:\n"
         "                       each read is copied once, into the reader's buffer\n"
         "                       (for copying a model out once; slower re-reads);\n"
         "                       implies source_cache=keep unless given.\n"
         "                       Shared mappings need Linux >= 6.6 (else ENODEV)\n"
         "  poll=SECONDS         compare the source (folder or file) for changes this\n"
         "                       often; 0: never (default 5 on network and FUSE\n"
         "                       filesystems, else 0: inotify for a folder, and a\n"
         "                       file is served as it was at mount time)\n"
         "  sandbox=on|off       once mounted, the daemon confines itself (default on):\n"
         "                       no new privileges, only the capability its source\n"
         "                       needs, reads only beneath the source and the folders\n"
         "                       its links resolve into (Landlock), and a system-call\n"
         "                       allow-list (seccomp); off logs a warning\n"
         "  user=NAME            serve as this user (name or uid) once mounted\n"
         "  sandbox_read=DIR     also allow reading beneath DIR (repeatable), for links\n"
         "                       that later point outside the folders seen at mount\n"
         "  read_ahead_kb=N|off  readahead of the mount, set when root (default 1024)\n"
         "  busy_poll_us=N       after answering, one idle thread polls the device this\n"
         "                       many microseconds before it sleeps, so the next request\n"
         "                       of a reader that waits on each one (an open, a small\n"
         "                       read) is taken at once, not after a wakeup; 0: never\n"
         "                       (default 1000; off on a one-CPU machine)\n"
         "  max_header=N         refuse headers over N bytes (default 100000000)\n"
         "  max_tensors=N        refuse headers with over N tensors (default: no cap)\n"
         "  rw                   accepted; the mount is read-only all the same\n"
         "  ro, nodev, nosuid, default_permissions are always in force.\n"
         "  defaults, auto, noauto, nofail, _netdev, user, users, x-* and other\n"
         "  mount(8) words are accepted and ignored.\n";
}

}  // namespace stfs
