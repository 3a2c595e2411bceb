// LiveFs: the Filesystem a mount serves now.
//
// A file source never changes. A directory source is rebuilt when the
// folder changes (FolderWatcher) and the new tree swapped in whole;
// requests in flight and open files keep the generation they started with
// (they hold a shared_ptr), so a reader of a replaced file keeps reading
// the old bytes consistently.
#pragma once

#include <atomic>
#include <memory>

#include "stfs/mount/filesystem.hpp"

namespace stfs {

class LiveFs {
 public:
  LiveFs(std::shared_ptr<Filesystem> fs, bool dynamic) : fs_(std::move(fs)), dynamic_(dynamic) {}

  std::shared_ptr<Filesystem> current() const { return fs_.load(std::memory_order_acquire); }
  void replace(std::shared_ptr<Filesystem> fs) {
    fs_.store(std::move(fs), std::memory_order_release);
  }
  // True for directory sources: the kernel must revalidate names and
  // listings instead of caching them forever.
  bool dynamic() const { return dynamic_; }

 private:
  std::atomic<std::shared_ptr<Filesystem>> fs_;
  const bool dynamic_;
};

}  // namespace stfs
