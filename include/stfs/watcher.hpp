// FolderWatcher: notices changes under a directory source (inotify on every
// folder of it) and calls `rebuild` once the changes have settled.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <thread>

namespace stfs {

class FolderWatcher {
 public:
  // `skip`: a path under root never watched nor entered (the mountpoint).
  FolderWatcher(std::string root, std::string skip, std::function<void()> rebuild);
  ~FolderWatcher();
  FolderWatcher(const FolderWatcher&) = delete;
  FolderWatcher& operator=(const FolderWatcher&) = delete;

  void start();
  void stop();

  // Changes that arrive within this quiet period are folded into one rebuild.
  static constexpr int kSettleMs = 200;

 private:
  void run();

  std::string root_;
  std::string skip_;
  std::function<void()> rebuild_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace stfs
