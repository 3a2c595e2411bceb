// FolderWatcher: notices changes under a directory source (or to a polled
// file source) and calls `rebuild` once the changes have settled. Local
// folders: inotify on every folder. Network and FUSE sources, where inotify
// never hears of changes made by other clients: a poll every
// `poll_seconds` that compares each entry's identity (inode, size, mtime,
// ctime). A poke() (a source read
// failed with ESTALE) asks for a rebuild at once.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <functional>
#include <string>
#include <thread>

#include "stfs/base/unique_fd.hpp"

namespace stfs {

class FolderWatcher {
 public:
  // `skip`: a path under root never watched nor entered (the mountpoint).
  FolderWatcher(std::string root, std::string skip, std::function<void()> rebuild,
                unsigned poll_seconds = 0);
  ~FolderWatcher();
  FolderWatcher(const FolderWatcher&) = delete;
  FolderWatcher& operator=(const FolderWatcher&) = delete;

  // Call right after the tree is built: the watches are armed (or the
  // poll's first digest taken) then, so a change made before start()
  // (while the mount comes up) is seen once it runs, not missed.
  void mark_loaded();
  void start();
  void stop();
  // Asks for a rebuild soon; safe from any thread, never blocks.
  void poke() { poked_ = true; }

  // Changes that arrive within this quiet period are folded into one rebuild.
  static constexpr int kSettleMs = 200;

 private:
  void run();

  std::string root_;
  std::string skip_;
  std::function<void()> rebuild_;
  unsigned poll_seconds_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> poked_{false};
  UniqueFd armed_;                 // inotify, armed by mark_loaded()
  std::optional<std::uint64_t> loaded_;  // the poll's digest from mark_loaded()
  std::thread thread_;
};

}  // namespace stfs
