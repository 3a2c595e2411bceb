#include "stfs/mount/session_state.hpp"

#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <unistd.h>

#include <ctime>

#include "stfs/mount/mountinfo.hpp"

namespace stfs {

namespace {

std::uint32_t random_tag() {
  std::uint32_t t = 0;
  while (t == 0) {
    if (::getrandom(&t, sizeof t, 0) != static_cast<ssize_t>(sizeof t)) {
      t = static_cast<std::uint32_t>(::getpid()) ^ static_cast<std::uint32_t>(::time(nullptr));
    }
  }
  return t;
}

}  // namespace

OpenFiles::OpenFiles() : tag_(random_tag()) {}

OpenFiles::~OpenFiles() {
  for (auto& c : chunks_) delete[] c.load();
}

std::uint64_t OpenFiles::open(std::shared_ptr<Filesystem> fs) {
  std::unique_lock lock(mu_);
  std::uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    if (next_ >= kChunk * kChunks) return 0;
    index = next_++;
    auto& chunk = chunks_[index / kChunk];
    if (!chunk.load(std::memory_order_relaxed)) {
      chunk.store(new Slot[kChunk], std::memory_order_release);
    }
  }
  Slot& s = chunks_[index / kChunk].load(std::memory_order_relaxed)[index % kChunk];
  s.fs = std::move(fs);
  s.used = true;
  ++count_;
  return (std::uint64_t{tag_} << 32) | index;
}

OpenFiles::Slot* OpenFiles::slot(std::uint64_t fh) const {
  if (static_cast<std::uint32_t>(fh >> 32) != tag_) return nullptr;
  const auto index = static_cast<std::uint32_t>(fh);
  if (index / kChunk >= kChunks) return nullptr;
  Slot* chunk = chunks_[index / kChunk].load(std::memory_order_acquire);
  if (!chunk || !chunk[index % kChunk].used) return nullptr;
  return &chunk[index % kChunk];
}

std::shared_ptr<Filesystem> OpenFiles::find(std::uint64_t fh) const {
  std::shared_lock lock(mu_);
  Slot* s = slot(fh);
  return s ? s->fs : nullptr;
}

void OpenFiles::release(std::uint64_t fh) {
  std::shared_ptr<Filesystem> old;  // dropped outside the lock
  std::unique_lock lock(mu_);
  Slot* s = slot(fh);
  if (!s) return;
  old = std::move(s->fs);
  s->used = false;
  free_.push_back(static_cast<std::uint32_t>(fh));
  --count_;
}

std::size_t OpenFiles::count() const {
  std::shared_lock lock(mu_);
  return count_;
}

std::shared_ptr<Filesystem> HeldInodes::answering(Ino ino) const {
  auto cur = live_.current();
  if (!live_.dynamic() || cur->tree().node(ino)) return cur;
  std::lock_guard lock(mu_);
  auto it = held_.find(ino);
  return it == held_.end() ? cur : it->second.fs;
}

void HeldInodes::remember(Ino ino, const std::shared_ptr<Filesystem>& fs) {
  if (!live_.dynamic() || ino == 0) return;
  std::lock_guard lock(mu_);
  Held& h = held_[ino];
  h.fs = fs;
  ++h.lookups;
}

void HeldInodes::forget(Ino ino, std::uint64_t n) {
  if (!live_.dynamic()) return;
  std::lock_guard lock(mu_);
  auto it = held_.find(ino);
  if (it == held_.end()) return;
  if (it->second.lookups <= n) {
    held_.erase(it);
  } else {
    it->second.lookups -= n;
  }
}

ReadAheadOnce::ReadAheadOnce(const MountOptions& opts)
    : opts_(opts), pending_(opts.read_ahead_kb.has_value() && ::geteuid() == 0) {}

void ReadAheadOnce::prepare() {
  if (!pending_.load()) return;
  auto knob = open_read_ahead_knob(opts_.mountpoint);
  if (knob) {
    knob_ = std::move(*knob);
  } else {
    knob_error_ = knob.error().message;
  }
}

void ReadAheadOnce::apply() {
  if (!knob_.valid()) {
    spdlog::warn("cannot raise the readahead of {}: {}", opts_.mountpoint,
                 knob_error_.empty() ? "not prepared" : knob_error_);
  } else if (auto r = write_read_ahead_kb(knob_.get(), *opts_.read_ahead_kb); !r) {
    spdlog::warn("cannot raise the readahead of {}: {}", opts_.mountpoint, r.error().message);
  } else {
    spdlog::debug("readahead of {} set to {} KiB", opts_.mountpoint, *opts_.read_ahead_kb);
  }
}

void SessionState::log_failure_once(const std::string& message) {
  if (!fault_logged.exchange(true)) spdlog::error("{}", message);
}

void SessionState::read_failed(const ReadError& e) {
  if (e.source_gone && on_source_gone) on_source_gone();
  if (e.log) log_failure_once(e.message);
}

void SessionState::log_direct_io_mappings(bool maps) const {
  if (maps) {
    spdlog::info("{}: direct_io; shared mappings are served from the page cache", opts->mountpoint);
  } else {
    // Asked for whatever libfuse this is (init_reply.hpp): only the kernel
    // can refuse, up to Linux 6.5.
    spdlog::warn(
        "{}: direct_io: shared mappings of its files fail with ENODEV (this kernel does "
        "not offer FUSE_DIRECT_IO_ALLOW_MMAP; Linux 6.6 and later do)",
        opts->mountpoint);
  }
}

}  // namespace stfs
