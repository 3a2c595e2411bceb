// The state a FUSE session keeps between requests, free of libfuse so it
// can be tested without a mount: which generation answers for each inode
// the kernel holds, the open files, and where a source read runs.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "stfs/mount/device_poll.hpp"
#include "stfs/mount/init_reply.hpp"
#include "stfs/mount/live.hpp"
#include "stfs/mount/options.hpp"
#include "stfs/mount/resume.hpp"
#include "stfs/mount/supervisor_link.hpp"
#include "stfs/source/io_pool.hpp"

namespace stfs {

// Open files. Each keeps the generation it was opened in: after a directory
// source changes, a reader of a replaced file still reads its old bytes.
//
// The kernel's file handle carries no pointer: it is this session's random
// tag (high 32 bits) and a slot number. A daemon that took the mount over
// (supervisor.hpp) is sent handles an earlier daemon issued; find() knows
// them by their tag and never dereferences them. Slots live in chunks that
// never move; find() takes the lock shared (the kernel sends no READ for a
// handle after its RELEASE, but a slot is reused by the next open, and the
// order between them is the kernel's, which no tool can see). Open files
// the kernel never released (RELEASE is sent in the background and may not
// arrive before unmount) are freed at the end.
class OpenFiles {
 public:
  OpenFiles();
  OpenFiles(const OpenFiles&) = delete;
  OpenFiles& operator=(const OpenFiles&) = delete;
  ~OpenFiles();

  // A handle for `fs`; 0 when every slot is taken (the open then fails).
  std::uint64_t open(std::shared_ptr<Filesystem> fs);
  // The generation of a handle this session issued and has not released;
  // nullptr for any other handle.
  std::shared_ptr<Filesystem> find(std::uint64_t fh) const;
  void release(std::uint64_t fh);
  std::size_t count() const;
  // This session's tag, for tests.
  std::uint32_t tag() const { return tag_; }

  static constexpr std::uint32_t kChunk = 1024;
  static constexpr std::uint32_t kChunks = 4096;  // 4 Mi open files

 private:
  struct Slot {
    std::shared_ptr<Filesystem> fs;
    bool used = false;
  };
  Slot* slot(std::uint64_t fh) const;

  const std::uint32_t tag_;
  mutable std::shared_mutex mu_;
  std::array<std::atomic<Slot*>, kChunks> chunks_{};
  std::vector<std::uint32_t> free_;
  std::uint32_t next_ = 0;
  std::size_t count_ = 0;
};

// Directory sources only: the generation each inode the kernel still holds
// was looked up in, with its lookup count. A request for an inode that the
// current tree no longer has (a replaced file's, asked at EOF by cat) is
// answered from that generation until the kernel forgets it.
class HeldInodes {
 public:
  explicit HeldInodes(const LiveFs& live) : live_(live) {}

  // The generation that answers for `ino`: the current one if it has the
  // inode (an unchanged file keeps its number, so both agree), else the
  // one the kernel looked it up in.
  std::shared_ptr<Filesystem> answering(Ino ino) const;
  // The kernel now holds one more reference to `ino`, from generation `fs`.
  void remember(Ino ino, const std::shared_ptr<Filesystem>& fs);
  // The kernel dropped `n` references to `ino`.
  void forget(Ino ino, std::uint64_t n);

 private:
  struct Held {
    std::shared_ptr<Filesystem> fs;
    std::uint64_t lookups = 0;
  };
  const LiveFs& live_;
  mutable std::mutex mu_;
  std::unordered_map<Ino, Held> held_;
};

// Where a READ of source bytes runs: on the loop thread that received it
// while fewer than `limit` are, else on the I/O pool. The loop has `limit`
// threads plus a few more, which therefore never wait on a source: a
// stalled source never blocks lookups, getattr or the JSON files.
class ReadDispatch {
 public:
  ReadDispatch(unsigned limit, unsigned pool_threads)
      : limit_(limit), pool_threads_(pool_threads) {}
  // Starts the pool's threads: only once the daemon is confined, so that
  // they start confined (sandbox.hpp). Before it, every read runs inline.
  void start() { pool_ = std::make_unique<IoPool>(pool_threads_); }

  template <typename Job>
  void run(Job&& job) {
    if (inline_.fetch_add(1) < limit_ || !pool_) {
      job();
      inline_.fetch_sub(1);
      return;
    }
    inline_.fetch_sub(1);
    pool_->submit(std::forward<Job>(job));
  }
  // Runs what is queued, then stops the pool (while the session exists).
  void drain() { pool_.reset(); }

 private:
  std::atomic<unsigned> inline_{0};
  const unsigned limit_;
  const unsigned pool_threads_;
  std::unique_ptr<IoPool> pool_;
};

// Raises the mount's readahead (-o read_ahead_kb=) so buffered readers send
// 1 MiB requests instead of 128 KiB. The kernel lowers the value to the
// INIT reply's max_readahead when it processes that reply, so this must
// run after INIT: on the first request that follows it. Any path lookup
// starts with a LOOKUP or GETATTR, so those two call once(). It reads
// /proc and writes /sys only; it never touches the mountpoint.
class ReadAheadOnce {
 public:
  explicit ReadAheadOnce(const MountOptions& opts);
  // Once mounted, before the sandbox: opens the mount's knob.
  void prepare();
  void once() {
    if (pending_.load(std::memory_order_relaxed) && pending_.exchange(false)) apply();
  }

 private:
  void apply();
  const MountOptions& opts_;
  std::atomic<bool> pending_;
  UniqueFd knob_;
  std::string knob_error_;
};

// Everything one FUSE session keeps (fuse_adapter.cpp's Context).
struct SessionState {
  // A year: a file source's tree is immutable, so cached entries never go
  // stale.
  static constexpr double kForever = 365.0 * 24 * 3600;
  // A folder's (or polled file's) names and attributes: changes appear
  // within this time plus the watcher's settle time.
  static constexpr double kChanging = 1.0;

  SessionState(LiveFs& l, const MountOptions& o)
      : live(&l),
        opts(&o),
        timeout(l.dynamic() ? kChanging : kForever),
        read_ahead(o),
        held(l),
        reads(o.single_thread ? 0 : o.threads, o.threads),
        stateless_opens(!l.dynamic() && !o.direct_io),
        poller(std::chrono::microseconds{o.busy_poll_us}) {}

  // Logs the first source failure of the mount, once: a reader looping on
  // EIO must not flood the log.
  void log_failure_once(const std::string& message);
  // A READ failed: log it if it is a source's failure, and ask for a
  // rebuild if the source is gone or replaced (which opens what is there
  // now).
  void read_failed(const ReadError& e);
  // -o direct_io at INIT: whether shared mappings of its files work
  // (`maps`: the kernel serves them from its page cache), said once.
  void log_direct_io_mappings(bool maps) const;

  LiveFs* live;
  const MountOptions* opts;
  // Forever for a file source; short for a directory source, whose names
  // and attributes change when the folder does.
  double timeout;
  std::function<void()> on_ready{};
  std::function<void()> on_source_gone{};
  std::atomic<bool> fault_logged{false};
  ReadAheadOnce read_ahead;
  HeldInodes held;
  OpenFiles open_files;
  ReadDispatch reads;
  // Opens need no message: a file source has one generation, so a READ
  // without a handle reads the same bytes, and without -o direct_io every
  // file is opened alike. The kernel then skips OPEN, FLUSH and RELEASE,
  // one round trip each per file a reader opens (FUSE_CAP_NO_OPEN_SUPPORT;
  // off where the kernel lacks it, which INIT tells on a loop thread).
  std::atomic<bool> stateless_opens;
  // Reads the device for libfuse's loop threads (device_poll.hpp).
  DevicePoller poller;
  // INIT's offer and reply, where libfuse cannot ask for mappings of
  // direct_io files itself (init_reply.hpp).
  InitReply init_reply;
  // The supervisor (supervisor_link.hpp), where there is one: it hears of
  // INIT, and a takeover's INIT is fed from `resume` (resume.hpp).
  SupervisorLink* link = nullptr;
  ResumeInit resume;
  // The device, once mounted or adopted: the resend after a takeover.
  std::atomic<int> device_fd{-1};
  // A retire from the supervisor: the loop ends and nothing is unmounted.
  std::atomic<bool> retiring{false};
};

}  // namespace stfs
