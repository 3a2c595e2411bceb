// ReadReply: the answer to one READ, ready to send as it is.
//
// The namespace says which bytes a READ covers (memory, source ranges);
// this is where the source layer decides how they reach the reply, and
// every choice of the source cache lives here and nowhere else:
//  - spliced from the source's page cache into a pipe (one large range of
//    a local source: splice_pipe.hpp), from the source's mapping (no copy)
//    or through pread into a buffer (pread sources, O_DIRECT on FUSE
//    sources, small reads in drop mode);
//  - populating the mapping before the kernel copies from it (drop mode);
//  - gathering into one buffer when the pieces exceed what one vectored
//    reply may carry;
//  - the truncation check before any byte goes out;
//  - after the send: releasing served bytes (drop mode), or, on EFAULT
//    from a mapping, marking the source truncated.
// The adapter gets the pieces, sends them, and calls complete() with the
// send's result.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "stfs/base/inline_vec.hpp"
#include "stfs/base/result.hpp"
#include "stfs/format/convert.hpp"

namespace stfs {

class Model;
class SplicePipe;

// Why a READ failed and what the mount does about it.
struct ReadError {
  int errnum = EIO;          // what the reader gets
  std::string message;       // for the log, naming the source
  bool log = false;          // a source failure: the mount logs the first one
  bool source_gone = false;  // the file vanished or was replaced: rebuild
};

class ReadReply {
 public:
  // The bytes of the reply, in order, are built from parts: memory that
  // outlives the reply (a header blob), or `size` bytes of `src` at
  // `offset`.
  void add_memory(const char* data, std::size_t size);
  void add_source(const Model& src, std::uint64_t offset, std::size_t size);
  // Applies the source policy to the parts added: checks truncation, reads
  // what must be read, and lays out the pieces.
  Result<void, ReadError> finish();

  // The float32 view: `size` bytes at `offset` of the f32 rendering (by
  // `dec`) of the tensor whose bytes start at `begin` in `src`. Whole
  // blocks are read with pread (never through the mapping: a truncated
  // source then gives EIO, not SIGBUS) and converted in the daemon.
  Result<void, ReadError> converted(const Model& src, const F32Decoder& dec, std::uint64_t begin,
                                    std::uint64_t offset, std::size_t size);

  // What to send: none (end of file), one piece (fuse_reply_buf) or more
  // (fuse_reply_iov). Pieces point into memory, a source mapping, or this
  // thread's read buffer: send them on this thread, before the next READ.
  std::span<const iovec> pieces() const { return iov_.span(); }
  // Or the reply's size() bytes wait in this pipe, to be spliced into the
  // reply on this thread; -1 if they are in pieces().
  int pipe_fd() const;
  std::size_t size() const { return size_; }

  // After the send: `sent` is the send's result (0, or -errno). Releases
  // the served source bytes in drop mode; on EFAULT (a mapped source was
  // truncated under the copy) marks the source and returns the message to
  // log.
  std::optional<std::string> complete(int sent) const;

 private:
  // kConverted: the source range a converted piece was read from, released
  // like the others once sent.
  enum class How : std::uint8_t { kMemory, kMapped, kPread, kPreadRandom, kConverted, kSpliced };
  struct Part {
    const char* data = nullptr;  // kMemory
    const Model* src = nullptr;  // else: `size` source bytes at `offset`
    std::uint64_t offset = 0;
    std::size_t size = 0;
    How how = How::kMemory;
  };

  // Two inline: an NPY header and its tensor's bytes, the most one file
  // but a packed one needs.
  InlineVec<Part, 2> parts_;
  InlineVec<iovec, 2> iov_;
  std::size_t size_ = 0;
  SplicePipe* pipe_ = nullptr;  // the bytes are in it (kSpliced)
};

}  // namespace stfs
