// The FUSE glue: libfuse low-level callbacks over Filesystem. The only file
// that includes fuse_lowlevel.h.
//
// Each callback sends exactly one reply. Callbacks are noexcept: anything
// thrown becomes ENOMEM or EIO here and never crosses into libfuse. The
// namespace of a file source never changes, so entries and attributes are
// cached for as long as the kernel will, negative lookups included. A folder
// source's tree is replaced when the folder changes; lookups and forgets
// then track which generation each inode the kernel holds came from.
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "stfs/mount/device_io.hpp"
#include "stfs/mount/session_run.hpp"
#include "stfs/mount/session_state.hpp"
#include "stfs/source/splice_pipe.hpp"

namespace stfs {
namespace {

using Context = SessionState;

Context& ctx(fuse_req_t req) { return *static_cast<Context*>(fuse_req_userdata(req)); }
// The generation this request is served from.
std::shared_ptr<Filesystem> fs_of(fuse_req_t req) { return ctx(req).live->current(); }

// The generation that answers for inode `ino` (HeldInodes).
std::shared_ptr<Filesystem> fs_for(fuse_req_t req, fuse_ino_t ino) {
  return ctx(req).held.answering(ino);
}
// The generation an open file answers from: the one it was opened in, or
// the inode's where opens send no message (SessionState::stateless_opens).
// A handle an earlier daemon issued (a takeover) is looked up, never
// followed: the inode's generation answers if it has the inode (a number
// names the same bytes in every generation), else nullptr (ESTALE).
std::shared_ptr<Filesystem> fs_opened(fuse_req_t req, fuse_ino_t ino, const fuse_file_info* fi) {
  if (!fi || !fi->fh) return fs_for(req, ino);
  if (auto fs = ctx(req).open_files.find(fi->fh)) return fs;
  auto fs = fs_for(req, ino);
  return fs->tree().node(ino) ? fs : nullptr;
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

// libfuse's loop reads and answers through device_io.hpp (splice stays
// on: a custom io without it copies).
bool route_device_reads(fuse_session* se, int fd) {
  fuse_custom_io io{};
  io.read = device_read;
  io.writev = device_writev;
  io.splice_receive = device_splice;
  io.splice_send = device_splice;
  if (fuse_session_custom_io(se, &io, fd) != 0) {
    spdlog::debug("libfuse kept its own device reads: no polling before sleep");
    return false;
  }
  return true;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  auto* c = static_cast<Context*>(userdata);
  // The source never changes under us as far as the kernel must know:
  // no invalidation on mtime changes, and readdirplus always (ls -l).
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  // Source bytes reach the kernel by splice (splice_pipe.hpp): no READ
  // larger than the pipes hold. max_write bounds the kernel's requests
  // (max_pages) and nothing else here: nothing is written.
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) {
    conn->want |= FUSE_CAP_SPLICE_WRITE;
    const std::size_t largest = SplicePipe::largest_request();
    if (largest > 0 && largest < conn->max_write) conn->max_write = static_cast<unsigned>(largest);
  }
  // libfuse ends the session if init() leaves max_read other than -o said.
  if (const unsigned max_read = fuse_max_read(*c->opts)) conn->max_read = max_read;
  if (!(conn->capable & FUSE_CAP_NO_OPEN_SUPPORT)) c->stateless_opens = false;
  if (c->opts->direct_io) {
    // The kernel refuses shared mappings of direct_io files (ENODEV) unless
    // asked to serve them from its page cache: libfuse 3.16 asks; for an
    // older one the INIT reply is amended on its way out (init_reply.hpp).
    bool maps = false;
#ifdef FUSE_CAP_DIRECT_IO_ALLOW_MMAP
    if (conn->capable & FUSE_CAP_DIRECT_IO_ALLOW_MMAP) {
      conn->want |= FUSE_CAP_DIRECT_IO_ALLOW_MMAP;
      maps = true;
    }
#else
    if (c->init_reply.offers_direct_io_mmap()) {
      c->init_reply.ask_direct_io_mmap();
      maps = true;
    }
#endif
    c->log_direct_io_mappings(maps);
  }
  if (c->on_ready) c->on_ready();
  // A takeover says it serves once INIT's reply is dropped (device_writev).
  if (c->link && !c->resume.armed()) c->link->serving();
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ctx(req).read_ahead.once();
  guarded(req, [&] {
    auto fs = fs_for(req, parent);
    auto r = fs->lookup(parent, name);
    if (r) {
      fuse_entry_param e = entry_for(*r, ctx(req).timeout);
      ctx(req).held.remember(e.ino, fs);
      if (fuse_reply_entry(req, &e) != 0) ctx(req).held.forget(e.ino, 1);
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
  ctx(req).held.forget(ino, n);
  fuse_reply_none(req);
}
void op_forget_multi(fuse_req_t req, size_t count, fuse_forget_data* f) {
  for (size_t i = 0; i < count; ++i) ctx(req).held.forget(f[i].ino, f[i].nlookup);
  fuse_reply_none(req);
}

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  ctx(req).read_ahead.once();
  guarded(req, [&] {
    const auto fs = fs_opened(req, ino, fi);
    if (!fs) return fuse_reply_err(req, ESTALE), void();
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
    // ENOSYS: this open and every later one succeed in the kernel, with
    // keep_cache, and send no message (SessionState::stateless_opens).
    if (ctx(req).stateless_opens) return fuse_reply_err(req, ENOSYS), void();
    // The bytes behind an inode number never change (a changed file gets a
    // new number): keep the page cache across opens.
    fi->keep_cache = 1;
    fi->noflush = 1;
    // -o direct_io: source bytes go straight to the reader (options.hpp);
    // the JSON files stay cached.
    if (ctx(req).opts->direct_io && !fs->in_memory(ino)) fi->direct_io = 1;
    const std::uint64_t handle = ctx(req).open_files.open(std::move(fs));
    if (handle == 0) return fuse_reply_err(req, ENFILE), void();
    fi->fh = handle;
    // Interrupted: no RELEASE follows.
    if (fuse_reply_open(req, fi) != 0) ctx(req).open_files.release(handle);
  });
}

// Answers one READ from generation `fs`: get the reply, send it, complete
// it. Every choice about the source is the source layer's (read_reply.hpp).
void serve_read(fuse_req_t req, const Filesystem& fs, fuse_ino_t ino, size_t size, off_t off) {
  auto reply = fs.read(ino, static_cast<std::uint64_t>(off), size);
  if (!reply) {
    ctx(req).read_failed(reply.error());  // logged and followed up
    return reply_error(req, Error{reply.error().errnum, reply.error().message});
  }
  const std::span<const iovec> pieces = reply->pieces();
  fuse_bufvec piped = FUSE_BUFVEC_INIT(reply->size());
  piped.buf[0].flags = FUSE_BUF_IS_FD;
  piped.buf[0].fd = reply->pipe_fd();
  // The pipe: libfuse splices its pages into the reply (or reads them, if
  // it cannot). One piece goes as a buffer: fuse_reply_iov allocates a
  // copy of the vector per call.
  const int sent =
      piped.buf[0].fd >= 0 ? fuse_reply_data(req, &piped, fuse_buf_copy_flags{})
      : pieces.size() > 1  ? fuse_reply_iov(req, pieces.data(), static_cast<int>(pieces.size()))
      : pieces.empty()
          ? fuse_reply_buf(req, nullptr, 0)
          : fuse_reply_buf(req, static_cast<const char*>(pieces[0].iov_base), pieces[0].iov_len);
  if (auto message = reply->complete(sent)) ctx(req).log_failure_once(*message);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  guarded(req, [&] {
    if (off < 0) return fuse_reply_err(req, EINVAL), void();
    Context& c = ctx(req);
    const std::shared_ptr<Filesystem> fs = fs_opened(req, ino, fi);
    if (!fs) return fuse_reply_err(req, ESTALE), void();
    // The JSON files are in memory: always answered here.
    if (fs->in_memory(ino)) return serve_read(req, *fs, ino, size, off);
    // Source reads run here while few are in flight; past that they go to
    // the I/O pool, so the loop always keeps threads for everything else.
    c.reads.run(
        [req, fs, ino, size, off] { guarded(req, [&] { serve_read(req, *fs, ino, size, off); }); });
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
        if (need <= size - used && ep.ino != 0) c.held.remember(ep.ino, fsp);
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
  if (fi->fh) ctx(req).open_files.release(fi->fh);
  fuse_reply_err(req, 0);
}
void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }
// Without OPEN there is no noflush either: ENOSYS ends FLUSH for good.
void op_flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) {
  fuse_reply_err(req, ctx(req).stateless_opens ? ENOSYS : 0);
}
void op_fsync(fuse_req_t req, fuse_ino_t, int, fuse_file_info*) { fuse_reply_err(req, 0); }

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, [&] {
    struct statvfs s = fs_of(req)->statfs();
    fuse_reply_statfs(req, &s);
  });
}

void reply_xattr(fuse_req_t req, const Result<std::string>& r, size_t size) {
  if (!r) return reply_error(req, r.error());
  const std::string& value = *r;
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, [&] { reply_xattr(req, fs_for(req, ino)->getxattr(ino, name), size); });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, [&] { reply_xattr(req, fs_for(req, ino)->listxattr(ino), size); });
}

// Everything that would change the tree. With the mount "ro" the kernel
// refuses most of these itself; these replies are the second line.
// Any handler with the request first: replies EROFS, whatever else it gets.
template <typename... Rest>
void erofs_op(fuse_req_t req, Rest...) {
  fuse_reply_err(req, EROFS);
}
void op_readlink(fuse_req_t req, fuse_ino_t) { fuse_reply_err(req, EINVAL); }

fuse_lowlevel_ops make_ops() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.setattr = erofs_op;
  ops.readlink = op_readlink;
  ops.mknod = erofs_op;
  ops.mkdir = erofs_op;
  ops.unlink = erofs_op;
  ops.rmdir = erofs_op;
  ops.symlink = erofs_op;
  ops.rename = erofs_op;
  ops.link = erofs_op;
  ops.open = op_open;
  ops.read = op_read;
  ops.write = erofs_op;
  ops.flush = op_flush;
  ops.release = op_release;
  ops.fsync = op_fsync;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.fsyncdir = op_fsync;
  ops.statfs = op_statfs;
  ops.setxattr = erofs_op;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.removexattr = erofs_op;
  ops.create = erofs_op;
  ops.fallocate = erofs_op;
  return ops;
}

// The libfuse calls of one session; its C handles are released in
// reverse order. When each runs is run_session()'s (session_run.hpp).
class LibfuseDriver final : public FuseDriver {
 public:
  explicit LibfuseDriver(Context& c) : c_(c) {}
  ~LibfuseDriver() override {
    close();
    fuse_opt_free_args(&args_);
  }
  LibfuseDriver(const LibfuseDriver&) = delete;
  LibfuseDriver& operator=(const LibfuseDriver&) = delete;

  Result<void> create(const std::string& kernel_options, bool debug) override {
    static const fuse_lowlevel_ops ops = make_ops();
    if (fuse_opt_add_arg(&args_, "stfs") != 0 || fuse_opt_add_arg(&args_, "-o") != 0 ||
        fuse_opt_add_arg(&args_, kernel_options.c_str()) != 0 ||
        (debug && fuse_opt_add_arg(&args_, "-d") != 0)) {
      return unexpected(Error{ENOMEM, "cannot build the FUSE arguments: out of memory"});
    }
    se_ = fuse_session_new(&args_, &ops, sizeof ops, &c_);
    if (!se_) {
      return unexpected(Error{EIO, "cannot create the FUSE session for " + c_.opts->mountpoint +
                                       " (options: " + kernel_options + ")"});
    }
    return {};
  }
  Result<void> mount(const std::string& mountpoint) override {
    if (fuse_session_mount(se_, mountpoint.c_str()) == 0) return {};
    return unexpected(Error{EIO, "see the message above (is /dev/fuse usable?)"});
  }
  Result<void> adopt(int fd) override {
    if (stfs::route_device_reads(se_, fd)) return {};
    ::close(fd);
    return unexpected(Error{EIO, "libfuse refused the connection's descriptor"});
  }
  int device_fd() const override { return fuse_session_fd(se_); }
  void route_device_reads() override { stfs::route_device_reads(se_, fuse_session_fd(se_)); }
  Result<int> loop(bool single_thread, unsigned max_threads) override {
    if (single_thread) return fuse_session_loop(se_);
    fuse_loop_config* cfg = fuse_loop_cfg_create();
    if (!cfg) return unexpected(Error{ENOMEM, "cannot create the FUSE loop configuration"});
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_clone_fd(cfg, 0);
    const int res = fuse_session_loop_mt(se_, cfg);
    fuse_loop_cfg_destroy(cfg);
    return res;
  }
  void exit() override { fuse_session_exit(se_); }
  bool exited() const override { return fuse_session_exited(se_) != 0; }
  void unmount() override { fuse_session_unmount(se_); }
  void close() override {
    if (se_) fuse_session_destroy(se_);
    se_ = nullptr;
  }

 private:
  Context& c_;
  fuse_args args_ = FUSE_ARGS_INIT(0, nullptr);
  fuse_session* se_ = nullptr;
};

}  // namespace

const char* libfuse_version() { return fuse_pkgversion(); }

int serve(LiveFs& live, const MountOptions& opts, SessionHooks hooks, SupervisorLink* link,
          Handover* takeover) {
  Context c(live, opts);
  c.link = link;
  LibfuseDriver driver(c);
  if (!takeover) return run_session(driver, c, std::move(hooks));
  c.resume.arm(std::move(takeover->init), takeover->resend_at_start);
  return run_session(driver, c, std::move(hooks), takeover->fuse.release());
}

}  // namespace stfs
