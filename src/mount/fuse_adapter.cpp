// The FUSE glue: libfuse low-level callbacks over Filesystem. The only file
// that includes fuse_lowlevel.h.
//
// Each callback sends exactly one reply. Callbacks are noexcept: anything
// thrown becomes ENOMEM or EIO here and never crosses into libfuse. The
// namespace of a file source never changes, so entries and attributes are
// cached for as long as the kernel will, negative lookups included. A folder
// source's tree is replaced when the folder changes; lookups and forgets
// then track which generation each inode the kernel holds came from.
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stfs/mount/auto_unmount.hpp"
#include "stfs/mount/fuse_session.hpp"
#include "stfs/source/io_pool.hpp"
#include "stfs/mount/mountinfo.hpp"

namespace stfs {
namespace {

// A year: the tree is immutable, so cached entries never go stale.
constexpr double kForever = 365.0 * 24 * 3600;
// Loop threads beyond `threads=` that no source read may take.
constexpr unsigned kReservedThreads = 2;

// An open file keeps the generation it was opened in: after a directory
// source changes, a reader of a replaced file still reads its old bytes.
struct OpenFile {
  std::shared_ptr<Filesystem> fs;
};

struct Context {
  LiveFs* live = nullptr;
  const MountOptions* opts = nullptr;
  // Forever for a file source; short for a directory source, whose names
  // and attributes change when the folder does.
  double timeout = kForever;
  std::function<void()> on_ready{};
  std::atomic<bool> fault_logged{false};
  // Open files, so those the kernel never released (RELEASE is sent in the
  // background and may not arrive before unmount) are freed at the end.
  // Locked on open and release only, never on the read path.
  std::mutex open_mu;
  std::unordered_set<OpenFile*> open_files;
  std::atomic<bool> read_ahead_pending{false};
  // Source reads answered on loop threads right now, and how many may be:
  // the loop has this many threads plus kReservedThreads, which therefore
  // never wait on a source. Reads past the limit go to `pool`.
  std::atomic<unsigned> inline_io{0};
  unsigned inline_limit = 1;
  std::unique_ptr<IoPool> pool;
  std::function<void()> on_source_gone{};
  // Directory sources only: the generation each inode the kernel still
  // holds was looked up in, with its lookup count. A request for an inode
  // that the current tree no longer has (a replaced file's, asked at EOF by
  // cat) is answered from that generation until the kernel forgets it.
  struct Held {
    std::shared_ptr<Filesystem> fs;
    std::uint64_t lookups = 0;
  };
  std::mutex held_mu;
  std::unordered_map<fuse_ino_t, Held> held;
};

// Raises the mount's readahead so buffered readers send 1 MiB requests
// instead of 128 KiB. The kernel lowers the value to the INIT reply's
// max_readahead when it processes that reply, so this must run after INIT:
// on the first request that follows it. Any path lookup starts with a
// LOOKUP or GETATTR, so those two call it. It reads /proc and writes /sys
// only; it never touches the mountpoint.
void tune_read_ahead_once(Context& c) {
  if (!c.read_ahead_pending.load(std::memory_order_relaxed)) return;
  if (!c.read_ahead_pending.exchange(false)) return;
  if (auto r = set_read_ahead_kb(c.opts->mountpoint, *c.opts->read_ahead_kb); !r) {
    spdlog::warn("cannot raise the readahead of {}: {}", c.opts->mountpoint, r.error().message);
  } else {
    spdlog::debug("readahead of {} set to {} KiB", c.opts->mountpoint, *c.opts->read_ahead_kb);
  }
}

Context& ctx(fuse_req_t req) { return *static_cast<Context*>(fuse_req_userdata(req)); }
// The generation this request is served from.
std::shared_ptr<Filesystem> fs_of(fuse_req_t req) { return ctx(req).live->current(); }

// The generation that answers for inode `ino`: the current one if it has
// the inode (an unchanged file keeps its number, so both agree), else the
// one the kernel looked it up in.
std::shared_ptr<Filesystem> fs_for(fuse_req_t req, fuse_ino_t ino) {
  Context& c = ctx(req);
  auto cur = c.live->current();
  if (!c.live->dynamic() || cur->tree().node(ino)) return cur;
  std::lock_guard lock(c.held_mu);
  auto it = c.held.find(ino);
  return it == c.held.end() ? cur : it->second.fs;
}

// The kernel now holds one more reference to `ino`, from generation `fs`.
void remember(Context& c, fuse_ino_t ino, const std::shared_ptr<Filesystem>& fs) {
  if (!c.live->dynamic() || ino == 0) return;
  std::lock_guard lock(c.held_mu);
  Context::Held& h = c.held[ino];
  h.fs = fs;
  ++h.lookups;
}

void forget_ino(Context& c, fuse_ino_t ino, std::uint64_t n) {
  if (!c.live->dynamic()) return;
  std::lock_guard lock(c.held_mu);
  auto it = c.held.find(ino);
  if (it == c.held.end()) return;
  if (it->second.lookups <= n) {
    c.held.erase(it);
  } else {
    it->second.lookups -= n;
  }
}

// Runs `body`; if it throws, replies with an errno instead.
template <typename Body>
void guarded(fuse_req_t req, Body&& body) noexcept {
  try {
    body();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (...) {
    fuse_reply_err(req, EIO);
  }
}

void reply_error(fuse_req_t req, const Error& e) {
  spdlog::debug("reply errno {}: {}", e.errnum, e.message);
  fuse_reply_err(req, e.errnum);
}

fuse_entry_param entry_for(const struct stat& st, double timeout) {
  fuse_entry_param e{};
  e.ino = st.st_ino;
  e.attr = st;
  e.attr_timeout = timeout;
  e.entry_timeout = timeout;
  return e;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* c = static_cast<Context*>(userdata);
  // The source never changes under us as far as the kernel must know:
  // no invalidation on mtime changes, and readdirplus always (ls -l).
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (c->on_ready) c->on_ready();
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  tune_read_ahead_once(ctx(req));
  guarded(req, [&] {
    auto fs = fs_for(req, parent);
    auto r = fs->lookup(parent, name);
    if (r) {
      fuse_entry_param e = entry_for(*r, ctx(req).timeout);
      remember(ctx(req), e.ino, fs);
      if (fuse_reply_entry(req, &e) != 0) forget_ino(ctx(req), e.ino, 1);
    } else if (r.error().errnum == ENOENT) {
      // ino 0 with a timeout: the kernel caches the miss.
      fuse_entry_param e{};
      e.entry_timeout = ctx(req).timeout;
      fuse_reply_entry(req, &e);
    } else {
      reply_error(req, r.error());
    }
  });
}

void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t n) {
  forget_ino(ctx(req), ino, n);
  fuse_reply_none(req);
}
void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* f) {
  for (size_t i = 0; i < count; ++i) forget_ino(ctx(req), f[i].ino, f[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  tune_read_ahead_once(ctx(req));
  guarded(req, [&] {
    // An open file answers from the generation it was opened in.
    auto fs = fi && fi->fh ? reinterpret_cast<OpenFile*>(fi->fh)->fs : fs_for(req, ino);
    auto r = fs->getattr(ino);
    if (!r) return reply_error(req, r.error());
    fuse_reply_attr(req, &*r, ctx(req).timeout);
  });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, [&] {
    auto fs = fs_for(req, ino);
    auto r = fs->open(ino, fi->flags);
    if (!r) return reply_error(req, r.error());
    // The bytes behind an inode number never change (a changed file gets a
    // new number): keep the page cache across opens.
    fi->keep_cache = 1;
    fi->noflush = 1;
    auto* handle = new OpenFile{std::move(fs)};
    Context& c = ctx(req);
    {
      std::lock_guard lock(c.open_mu);
      c.open_files.insert(handle);
    }
    fi->fh = reinterpret_cast<std::uint64_t>(handle);
    if (fuse_reply_open(req, fi) != 0) {  // interrupted: no RELEASE follows
      std::lock_guard lock(c.open_mu);
      c.open_files.erase(handle);
      delete handle;
    }
  });
}

// Logs the first source failure of the mount, once: a reader looping on EIO
// must not flood the log.
void log_source_failure_once(Context& c, const std::string& message) {
  if (!c.fault_logged.exchange(true)) spdlog::error("{}", message);
}

// A READ that failed: a source failure is logged (the first of the mount:
// a reader looping on EIO must not flood the log), and a source that is
// gone or replaced asks for a rebuild, which opens what is there now.
void read_failed(fuse_req_t req, const ReadError& e) {
  Context& c = ctx(req);
  if (e.source_gone && c.on_source_gone) c.on_source_gone();
  if (e.log) log_source_failure_once(c, e.message);
  reply_error(req, Error{e.errnum, e.message});
}

// Answers one READ from generation `fs`: get the reply, send it, complete
// it. Every choice about the source is the source layer's (read_reply.hpp).
void serve_read(fuse_req_t req, const Filesystem& fs, fuse_ino_t ino, size_t size, off_t off) {
  auto reply = fs.read(ino, static_cast<std::uint64_t>(off), size);
  if (!reply) return read_failed(req, reply.error());
  const std::span<const iovec> pieces = reply->pieces();
  // One piece goes as a buffer: fuse_reply_iov allocates a copy of the
  // vector per call.
  const int sent =
      pieces.size() > 1 ? fuse_reply_iov(req, pieces.data(), static_cast<int>(pieces.size()))
      : pieces.empty()  ? fuse_reply_buf(req, nullptr, 0)
                        : fuse_reply_buf(req, static_cast<const char*>(pieces[0].iov_base),
                                         pieces[0].iov_len);
  if (auto message = reply->complete(sent)) log_source_failure_once(ctx(req), *message);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  guarded(req, [&] {
    if (off < 0) return fuse_reply_err(req, EINVAL), void();
    Context& c = ctx(req);
    const std::shared_ptr<Filesystem>& fs = reinterpret_cast<OpenFile*>(fi->fh)->fs;
    // The JSON files are in memory: always answered here.
    if (fs->in_memory(ino)) return serve_read(req, *fs, ino, size, off);
    // Source reads run here while few are in flight; past that they go to
    // the I/O pool, so the loop always keeps threads for everything else.
    if (c.inline_io.fetch_add(1) < c.inline_limit) {
      serve_read(req, *fs, ino, size, off);
      c.inline_io.fetch_sub(1);
      return;
    }
    c.inline_io.fetch_sub(1);
    c.pool->submit([req, fs, ino, size, off] {
      guarded(req, [&] { serve_read(req, *fs, ino, size, off); });
    });
  });
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, [&] {
    auto r = fs_for(req, ino)->opendir(ino);
    if (!r) return reply_error(req, r.error());
    // A file source's listings never change; a folder's may.
    const bool fixed = !ctx(req).live->dynamic();
    fi->cache_readdir = fixed;
    fi->keep_cache = fixed;
    fuse_reply_open(req, fi);
  });
}

void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  guarded(req, [&] {
    if (off < 0) return fuse_reply_err(req, EINVAL), void();
    auto fsp = fs_for(req, ino);
    const Filesystem& fs = *fsp;
    Context& c = ctx(req);
    const double timeout = ctx(req).timeout;
    std::vector<char> buf(size);
    std::size_t used = 0;
    auto r = fs.readdir(ino, static_cast<std::uint64_t>(off), [&](const DirEntry& e) {
      std::string name(e.name);
      struct stat st = fs.tree().attr(e.ino);
      std::size_t need;
      if (plus) {
        fuse_entry_param ep = entry_for(st, timeout);
        if (name == "." || name == "..") ep.ino = 0;  // the kernel looks these up itself
        need = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &ep,
                                      static_cast<off_t>(e.next_offset));
        // Each entry that fits counts as a lookup, "." and ".." aside.
        if (need <= size - used && ep.ino != 0) remember(c, ep.ino, fsp);
      } else {
        need = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st,
                                 static_cast<off_t>(e.next_offset));
      }
      if (need > size - used) return false;
      used += need;
      return true;
    });
    if (!r) return reply_error(req, r.error());
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  do_readdir(req, ino, size, off, false);
}
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  do_readdir(req, ino, size, off, true);
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  auto* handle = reinterpret_cast<OpenFile*>(fi->fh);
  Context& c = ctx(req);
  {
    std::lock_guard lock(c.open_mu);
    c.open_files.erase(handle);
  }
  delete handle;
  fuse_reply_err(req, 0);
}
void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, [&] {
    struct statvfs s = fs_of(req)->statfs();
    fuse_reply_statfs(req, &s);
  });
}

void reply_xattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, [&] {
    auto r = fs_for(req, ino)->getxattr(ino, name);
    if (!r) return reply_error(req, r.error());
    reply_xattr(req, *r, size);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, [&] {
    auto r = fs_for(req, ino)->listxattr(ino);
    if (!r) return reply_error(req, r.error());
    reply_xattr(req, *r, size);
  });
}

// Everything that would change the tree. With the mount "ro" the kernel
// refuses most of these itself; these replies are the second line.
void erofs(fuse_req_t req) { fuse_reply_err(req, EROFS); }
void op_setattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) { erofs(req); }
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { erofs(req); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { erofs(req); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { erofs(req); }
void op_rmdir(fuse_req_t req, fuse_ino_t, const char*) { erofs(req); }
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { erofs(req); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) {
  erofs(req);
}
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { erofs(req); }
void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) {
  erofs(req);
}
void op_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { erofs(req); }
void op_removexattr(fuse_req_t req, fuse_ino_t, const char*) { erofs(req); }
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { erofs(req); }
void op_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) { erofs(req); }
void op_readlink(fuse_req_t req, fuse_ino_t) { fuse_reply_err(req, EINVAL); }

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = op_setattr;
  ops.readlink = op_readlink;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_rmdir;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = op_write;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsync;
  ops.statfs = op_statfs;
  ops.setxattr = op_setxattr;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = op_removexattr;
  ops.create = op_create;
  ops.fallocate = op_fallocate;
  return ops;
}

// libfuse splits -o lists on commas; a backslash protects one.
std::string escape_option_value(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// C handles of a session, released in reverse order.
struct SessionGuard {
  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
  fuse_session* se = nullptr;
  bool handlers = false;
  bool mounted = false;
  ~SessionGuard() {
    if (mounted) fuse_session_unmount(se);
    if (handlers) fuse_remove_signal_handlers(se);
    if (se) fuse_session_destroy(se);
    fuse_opt_free_args(&args);
  }
};

}  // namespace

int serve(LiveFs& live, const MountOptions& opts, SessionHooks hooks) {
  static const fuse_lowlevel_ops ops = make_ops();
  Context c;
  c.live = &live;
  c.opts = &opts;
  c.on_ready = std::move(hooks.on_ready);
  c.on_source_gone = std::move(hooks.on_source_gone);
  c.inline_limit = opts.single_thread ? 0 : opts.threads;
  c.pool = std::make_unique<IoPool>(opts.threads);
  // Changes appear within this time plus the watcher's settle time.
  if (live.dynamic()) c.timeout = 1.0;
  c.read_ahead_pending = opts.read_ahead_kb.has_value() && geteuid() == 0;
  SessionGuard g;

  std::string o = "ro,nodev,nosuid,default_permissions,subtype=stfs,fsname=" +
                  escape_option_value(opts.fsname.empty() ? opts.source : opts.fsname);
  for (const std::string& extra : opts.fuse_options) o += "," + extra;
  if (fuse_opt_add_arg(&g.args, "stfs") != 0 || fuse_opt_add_arg(&g.args, "-o") != 0 ||
      fuse_opt_add_arg(&g.args, o.c_str()) != 0 ||
      (opts.debug && fuse_opt_add_arg(&g.args, "-d") != 0)) {
    spdlog::error("cannot build the FUSE arguments: out of memory");
    return 3;
  }
  g.se = fuse_session_new(&g.args, &ops, sizeof ops, &c);
  if (!g.se) {
    spdlog::error("cannot create the FUSE session for {} (options: {})", opts.mountpoint, o);
    return 3;
  }
  if (fuse_set_signal_handlers(g.se) != 0) {
    spdlog::error("cannot install signal handlers");
    return 3;
  }
  g.handlers = true;
  // auto_unmount: the watcher starts before the mount exists (auto_unmount.hpp).
  int watcher_fd = -1;
  if (opts.auto_unmount) {
    auto w = start_unmount_watcher(opts.mountpoint);
    if (!w) {
      spdlog::error("cannot mount {} on {}: auto_unmount: {}", opts.source, opts.mountpoint,
                    w.error().message);
      return 3;
    }
    watcher_fd = *w;  // kept open (close-on-exec) until the process ends
  }
  if (fuse_session_mount(g.se, opts.mountpoint.c_str()) != 0) {
    spdlog::error("cannot mount {} on {}: see the message above (is /dev/fuse usable?)",
                  opts.source, opts.mountpoint);
    return 3;
  }
  g.mounted = true;
  if (watcher_fd >= 0) announce_mount(watcher_fd, opts.mountpoint);

  int res;
  if (opts.single_thread) {
    res = fuse_session_loop(g.se);
  } else {
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    if (!cfg) {
      spdlog::error("cannot create the FUSE loop configuration");
      return 3;
    }
    fuse_loop_cfg_set_max_threads(cfg, opts.threads + kReservedThreads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    res = fuse_session_loop_mt(g.se, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  if (hooks.on_stopping) hooks.on_stopping();
  c.pool.reset();  // answers what is queued while the session still exists
  for (OpenFile* f : c.open_files) delete f;  // the loop has ended: no more RELEASE
  c.open_files.clear();
  // A signal ends the loop with 0 here; an error in the loop is logged.
  if (res != 0 && !fuse_session_exited(g.se)) {
    spdlog::error("FUSE loop for {} ended with error {}", opts.mountpoint, res);
  }
  return 0;
}

}  // namespace stfs
