// The source layer's read policy: how the bytes of one READ reach the
// reply (read_reply.hpp).
#include "stfs/source/read_reply.hpp"

#include <cerrno>
#include <cstring>

#include "stfs/format/convert.hpp"
#include "stfs/source/model.hpp"
#include "stfs/source/splice_pipe.hpp"

namespace stfs {
namespace {

// Pieces one vectored reply may carry (IOV_MAX is 1024; one more for the
// FUSE header libfuse adds). Segments of a packed file are coalesced per
// run of a shard, so only one of many tiny shards needs more: then every
// piece is gathered into one buffer.
constexpr std::size_t kMaxReplyPieces = 1000;
// Source bytes of a READ up to this size from a mapped source are read
// with pread, without readahead, in drop mode. The kernel's readahead for
// a sequential reader sends 128 KiB requests or larger; a random reader's
// are its own size.
constexpr std::size_t kSmallRead = 64 << 10;

// This thread's read buffers, at least `n` bytes: no larger than the
// largest request the kernel sends (max_read), and never freed, so a
// READ costs no allocation. kReply holds a reply's bytes; kRaw the source
// bytes a view decodes into kReply.
enum Scratch { kReply, kRaw };
template <Scratch>
char* scratch(std::size_t n) {
  thread_local std::vector<char> buf;
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

// A pread of `src` failed. A shorter file (EIO) or a vanished one (ENXIO)
// stops serving what is gone; a file gone or replaced (ESTALE on NFS)
// asks for a rebuild, which opens what is there now. The reader gets EIO.
ReadError source_error(const Model& src, const Error& e) {
  if (e.errnum == EIO || e.errnum == ENXIO) src.fault();
  ReadError out;
  out.errnum = EIO;
  out.message = "cannot read the source " + src.path() + ": " + e.message;
  out.log = true;
  out.source_gone = e.errnum == ESTALE || e.errnum == ENOENT || e.errnum == ENXIO;
  return out;
}

}  // namespace

void ReadReply::add_memory(const char* data, std::size_t size) {
  if (size > 0) parts_.push_back(Part{data, nullptr, 0, size, How::kMemory});
}

void ReadReply::add_source(const Model& src, std::uint64_t offset, std::size_t size) {
  if (size > 0) parts_.push_back(Part{nullptr, &src, offset, size, How::kMapped});
}

Result<void, ReadError> ReadReply::finish() {
  const bool gather = parts_.size() > kMaxReplyPieces;
  std::size_t source_bytes = 0;
  for (const Part& p : parts_) {
    size_ += p.size;
    if (p.src) source_bytes += p.size;
  }
  std::size_t need = 0;
  for (Part& p : parts_) {
    if (!p.src) {
      if (gather) need += p.size;
      continue;
    }
    if (auto r = p.src->check_intact(p.offset + p.size); !r) {
      return unexpected(ReadError{EIO, r.error().message, true, false});
    }
    const bool mapped = p.src->read_path() == ReadPath::kMmap;
    if (gather || !mapped) {
      // Gathered bytes are read, never touched through the mapping.
      p.how = How::kPread;
    } else if (p.src->drops_cache() && source_bytes <= kSmallRead) {
      // In drop mode a source's bytes go once served, so how they come in
      // matters. A request this small is most likely a random reader's:
      // read just its pages from a descriptor without readahead
      // (Model::read) rather than let a fault read a window ahead for it.
      p.how = How::kPreadRandom;
    }
    if (p.how == How::kMapped && parts_.size() == 1 && p.size > kSmallRead) {
      // One large range, most likely a sequential reader's: through the
      // source's own read path into a pipe (splice_pipe.hpp).
      SplicePipe* pipe = SplicePipe::for_this_thread();
      if (pipe && pipe->fits(p.offset, p.size)) {
        auto r = pipe->fill(p.src->fd(), p.offset, p.size);
        if (r) {
          p.how = How::kSpliced;
          pipe_ = pipe;
          return {};
        }
        // What says splice cannot do it (a full pipe, a filesystem
        // without splice_read) leaves it to the mapping; a read error is
        // the source's.
        const int e = r.error().errnum;
        if (e != EAGAIN && e != EINVAL && e != ENOSYS && e != EOPNOTSUPP && e != EPERM) {
          return unexpected(source_error(*p.src, r.error()));
        }
      }
    }
    if (p.how != How::kMapped) need += p.size;
  }
  char* buf = need > 0 ? scratch<kReply>(need) : nullptr;
  std::size_t used = 0;
  for (const Part& p : parts_) {
    const char* data = p.data;
    switch (p.how) {
      case How::kMemory:
        if (gather) {
          std::memcpy(buf + used, p.data, p.size);
          data = buf + used;
          used += p.size;
        }
        break;
      case How::kPread:
      case How::kPreadRandom:
        if (auto r = p.src->read(buf + used, p.size, p.offset, p.how == How::kPreadRandom); !r) {
          return unexpected(source_error(*p.src, r.error()));
        }
        data = buf + used;
        used += p.size;
        break;
      case How::kConverted:  // never among parts finish() lays out
      case How::kSpliced: break;
      case How::kMapped:
        // Map these bytes first in drop mode, with forward-only readahead:
        // a default page fault reads around itself, half a window behind
        // too, and pages already served and dropped would come back.
        if (p.src->drops_cache()) p.src->populate(p.offset, p.size);
        // The kernel copies straight from the source's page-cache pages.
        data = p.src->mapping().data() + p.offset;
        break;
    }
    if (!gather) iov_.push_back(iovec{const_cast<char*>(data), p.size});
  }
  if (gather && used > 0) iov_.push_back(iovec{buf, used});
  return {};
}

Result<void, ReadError> ReadReply::converted(const Model& src, const F32Decoder& dec,
                                             std::uint64_t begin, std::uint64_t offset,
                                             std::size_t size) {
  if (size == 0) return {};
  // The whole blocks that hold the floats asked for.
  const std::uint64_t out_block = std::uint64_t{dec.block} * 4;
  const std::uint64_t first = offset / out_block,
                      last = (offset + size + out_block - 1) / out_block;
  const auto blocks = static_cast<std::size_t>(last - first);
  const auto raw_size = static_cast<std::size_t>(blocks * dec.block_bytes);
  char* raw = scratch<kRaw>(raw_size);
  if (auto r = src.read(raw, raw_size, begin + first * dec.block_bytes); !r) {
    return unexpected(source_error(src, r.error()));
  }
  char* out = scratch<kReply>(static_cast<std::size_t>(blocks * out_block));
  decode_f32(dec, reinterpret_cast<const std::uint8_t*>(raw), blocks,
             reinterpret_cast<float*>(out));
  iov_.push_back(iovec{out + (offset - first * out_block), size});
  size_ = size;
  // What drop mode releases: the source bytes in proportion.
  parts_.push_back(Part{nullptr, &src, begin + offset / out_block * dec.block_bytes,
                        static_cast<std::size_t>(size / out_block * dec.block_bytes),
                        How::kConverted});
  return {};
}

int ReadReply::pipe_fd() const { return pipe_ ? pipe_->read_end() : -1; }

std::optional<std::string> ReadReply::complete(int sent) const {
  if (pipe_) pipe_->settle();
  if (sent == 0) {
    // The mount's page cache holds these bytes now: the source's own copy
    // goes (Model::release_served).
    for (const Part& p : parts_) {
      if (p.src && p.src->drops_cache()) p.src->release_served(p.offset, p.size);
    }
    return std::nullopt;
  }
  // From a mapping, a source truncated under us fails the kernel's copy:
  // the reader gets EIO from the kernel, we get EFAULT, and stop serving
  // what is gone.
  std::optional<std::string> message;
  if (sent == -EFAULT) {
    for (const Part& p : parts_) {
      if (p.how != How::kMapped) continue;
      p.src->fault();
      if (!message) message = p.src->truncation_message();
    }
  }
  return message;
}

}  // namespace stfs
