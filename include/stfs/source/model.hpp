// Model: one open safetensors source file with its validated header.
//
// The header is read with pread into a buffer sized from the real file size
// (never from the length the file claims before that is checked), parsed,
// and kept; the fd stays open so the data can be served later even if the
// path is renamed or deleted.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "stfs/source/mapping.hpp"
#include "stfs/base/result.hpp"
#include "stfs/format/safetensors.hpp"
#include "stfs/base/unique_fd.hpp"

namespace stfs {

// How a source's bytes reach a READ (-o read_path=).
enum class ReadPath : std::uint8_t {
  kAuto,   // by the source's filesystem: pread on network and FUSE ones, else mmap
  kMmap,   // a shared mapping the kernel copies from (local filesystems)
  kPread,  // pread into the daemon, then the reply (refused or slow mappings)
};

// A mount's choices for reading its sources (-o read_path=, source_cache=).
struct SourcePolicy {
  ReadPath read_path = ReadPath::kAuto;
  // Drop a source's own cached copy of bytes once a READ has served them
  // (release_served): the mount's page cache holds them then.
  bool drop_cache = true;
};

// True for filesystems where a shared mapping is refused (FUSE direct_io) or
// slower than pread: FUSE, NFS, CIFS/SMB, 9p, Ceph, Lustre, GPFS, AFS...
bool is_remote_filesystem(long f_type);

struct ModelError {
  enum class Kind { kIo, kInvalid } kind;
  int errnum = 0;            // for kIo
  std::optional<Rule> rule;  // for kInvalid
  std::string message;       // names the reason; the caller adds the path
};

class Model {
 public:
  // Opens `path` read-only (once, non-blocking: a FIFO never hangs us) and
  // validates it; `parser` as for load().
  static Result<Model, ModelError> open(const std::string& path, const Limits& limits = {},
                                        HeaderParser* parser = nullptr);
  // Validates the regular file open on `fd` (fstat result `st`).
  // `parser`: one to reuse across files (a folder scan), which keeps the
  // JSON parser's buffers instead of allocating them per file.
  // `keep_header`: keep the header's bytes as validated (header_bytes()).
  // `expect`: the format the file's name promises (a folder's X.gguf,
  // X.safetensors); other bytes are refused before they are parsed. Without
  // it the format is the one the file's first bytes say.
  static Result<Model, ModelError> load(UniqueFd fd, std::string path, const struct stat& st,
                                        const Limits& limits = {},
                                        HeaderParser* parser = nullptr, bool keep_header = false,
                                        std::optional<Format> expect = std::nullopt);
  // Serves the bytes of the regular file open on `fd` as they are; the
  // header stays empty.
  static Model plain(UniqueFd fd, std::string path, const struct stat& st);

  const std::string& path() const { return path_; }
  int fd() const { return fd_.get(); }
  const struct stat& st() const { return st_; }
  const Header& header() const { return header_; }
  // Validated as safetensors (load), rather than served plain.
  bool is_safetensors() const { return parsed_; }
  // The 8 length bytes and the N header bytes exactly as they were read
  // and validated, if load() was asked to keep them; else empty. Served in
  // place of the source's own header, which may have changed since.
  const std::string& header_bytes() const { return header_bytes_; }

  // Readies the file for serving: maps it (kMmap), or not (kPread); kAuto
  // picks pread on network and FUSE filesystems (where a shared mapping is
  // refused, as under FUSE direct_io, or slow), mmap elsewhere. A mount
  // needs it, --check does not.
  Result<void> prepare(const SourcePolicy& policy = {});
  const Mapping& mapping() const { return map_; }
  // kMmap or kPread once prepared.
  ReadPath read_path() const { return read_path_; }
  // source_cache=drop: bytes served are released (release_served).
  bool drops_cache() const { return drop_cache_; }
  // How the bytes are read, for -v logs: "a shared mapping", "pread", or
  // "pread (O_DIRECT)".
  const char* read_path_name() const;

  // Bytes from offset 0 still backed by the file: only ever shrinks, once a
  // read finds the file shorter. Shared by every generation of a folder
  // mount that serves this source.
  std::uint64_t intact() const { return intact_->load(std::memory_order_relaxed); }
  void shrink_intact(std::uint64_t now) const;
  // EIO naming the source if it no longer holds bytes up to `end`: past
  // what is left of it, or (a mapped source) past its size now.
  Result<void> check_intact(std::uint64_t end) const;
  // A read found the source shorter (EFAULT from the mapping, EIO from
  // pread): re-read its size and stop serving what is gone.
  void fault() const;
  // "source X shrank to N bytes while mounted; ...", for the log.
  std::string truncation_message() const;

  // Source bytes [offset, offset + size) were just served (the mount's page
  // cache holds them now): drop the source's own cached copy of every 2 MiB
  // chunk each time it has now been served whole. Whole aligned chunks, because
  // the page cache keeps large folios (up to 2 MiB) that a partial range
  // cannot evict; the bytes no read ever serves (the header, the tail past
  // the end) count as served from the start. Like a native
  // posix_fadvise(DONTNEED) user: pages another process maps are kept.
  void release_served(std::uint64_t offset, std::uint64_t size) const;
  // Reads exactly `len` bytes at `off` of the file (the pread path): with
  // O_DIRECT on a FUSE source, unless the filesystem below refuses it.
  // `random`: a small read of a mapped source, read without readahead.
  // Fails with EIO if the file ends first.
  Result<void> read(void* buf, std::size_t len, std::uint64_t off, bool random = false) const;
  // Whether reads go through an O_DIRECT descriptor (a FUSE source).
  bool reads_direct() const {
    return direct_fd_.valid() && !served_->direct_refused.load(std::memory_order_relaxed);
  }
  // Maps [offset, offset + size) of the source before a reply copies it:
  // forward-only readahead on the mapping (nothing served comes back), and
  // no fault per page during the copy.
  void populate(std::uint64_t offset, std::uint64_t size) const;

 private:
  void open_direct();
  // pread_full of our descriptor `fd`, which on a FUSE source reads an
  // early end again for a while (model.cpp).
  Result<void> read_below(int fd, void* buf, std::size_t len, std::uint64_t off) const;

  std::string path_;
  UniqueFd fd_;
  UniqueFd direct_fd_;  // the same file with O_DIRECT (FUSE sources)
  bool fuse_ = false;   // a FUSE source (open_direct)
  struct stat st_ {};
  Header header_;
  std::string header_bytes_;
  bool parsed_ = false;
  Mapping map_;
  ReadPath read_path_ = ReadPath::kAuto;
  bool drop_cache_ = true;
  std::unique_ptr<std::atomic<std::uint64_t>> intact_ =
      std::make_unique<std::atomic<std::uint64_t>>(0);
  // State the reading threads share, behind a pointer so that a Model
  // stays movable: bytes served per 2 MiB chunk (made on the first
  // release_served()), the mapping's advice, the small-read descriptor,
  // and whether O_DIRECT was refused.
  struct Served {
    std::once_flag chunks_once;
    std::once_flag advice_once;
    std::once_flag random_once;
    UniqueFd random_fd;  // for small reads of a mapped source (read())
    std::atomic<bool> direct_refused{false};
    std::unique_ptr<std::atomic<std::uint32_t>[]> chunks;
  };
  std::unique_ptr<Served> served_ = std::make_unique<Served>();
};

// pread exactly `len` bytes at `off`, retrying short reads and EINTR.
// Fails with EIO if the file ends first.
Result<void> pread_full(int fd, void* buf, std::size_t len, std::uint64_t off);
// pread up to `len` bytes at `off`, retrying short reads and EINTR: fewer
// only where the file ends.
Result<std::size_t> pread_upto(int fd, void* buf, std::size_t len, std::uint64_t off);

}  // namespace stfs
