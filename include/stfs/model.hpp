// Model: one open safetensors source file with its validated header.
//
// The header is read with pread into a buffer sized from the real file size
// (never from the length the file claims before that is checked), parsed,
// and kept; the fd stays open so the data can be served later even if the
// path is renamed or deleted.
#pragma once

#include <sys/stat.h>

#include <string>

#include "stfs/result.hpp"
#include "stfs/safetensors.hpp"
#include "stfs/unique_fd.hpp"

namespace stfs {

struct ModelError {
  enum class Kind { kIo, kInvalid } kind;
  int errnum = 0;            // for kIo
  std::optional<Rule> rule;  // for kInvalid
  std::string message;       // names the reason; the caller adds the path
};

class Model {
 public:
  // Opens `path` read-only and validates it.
  static Result<Model, ModelError> open(const std::string& path, const Limits& limits = {});
  // Opens any regular file (following symlinks) to serve its bytes as they
  // are; the header stays empty.
  static Result<Model, ModelError> open_plain(const std::string& path);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  const struct stat& st() const { return st_; }
  const Header& header() const { return header_; }

 private:
  std::string path_;
  UniqueFd fd_;
  struct stat st_ {};
  Header header_;
};

// pread exactly `len` bytes at `off`, retrying short reads and EINTR.
// Fails with EIO if the file ends first.
Result<void> pread_full(int fd, void* buf, std::size_t len, std::uint64_t off);

}  // namespace stfs
