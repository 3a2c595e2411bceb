// Opening and validating a source file.
#include "stfs/source/model.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "stfs/format/formats.hpp"
#include "stfs/format/gguf.hpp"

namespace stfs {

Result<std::size_t> pread_upto(int fd, void* buf, std::size_t len, std::uint64_t off) {
  auto* p = static_cast<char*>(buf);
  std::size_t done = 0;
  while (done < len) {
    ssize_t n = ::pread(fd, p + done, len - done, static_cast<off_t>(off + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      return unexpected(Error{e, std::strerror(e)});
    }
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return done;
}

Result<void> pread_full(int fd, void* buf, std::size_t len, std::uint64_t off) {
  auto n = pread_upto(fd, buf, len, off);
  if (!n) return unexpected(n.error());
  if (*n < len) return unexpected(Error{EIO, "file shrank while being read"});
  return {};
}

bool is_remote_filesystem(long f_type) {
  switch (static_cast<unsigned long>(f_type) & 0xffffffffUL) {
    case 0x65735546:  // FUSE (sshfs, s3 mounts, squashfuse, hf-mount, bindfs)
    case 0x6969:      // NFS
    case 0xff534d42:  // CIFS
    case 0xfe534d42:  // SMB2
    case 0x517b:      // SMB
    case 0x01021997:  // 9p
    case 0x00c36400:  // Ceph
    case 0x0bd00bd0:  // Lustre
    case 0x47504653:  // GPFS
    case 0x5346414f:  // AFS
    case 0x6b414653:  // kAFS
    case 0x19830326:  // FhGFS / BeeGFS
    case 0x013111a8:  // IBRIX
    case 0x73757245:  // Coda
    case 0x7461636f:  // OCFS2
    case 0x01161970:  // GFS2
      return true;
    default: return false;
  }
}

Result<void> Model::prepare(const SourcePolicy& policy) {
  const auto size = static_cast<std::uint64_t>(st_.st_size);
  ReadPath how = policy.read_path;
  drop_cache_ = policy.drop_cache;
  if (how == ReadPath::kAuto) {
    struct statfs sf {};
    how = ::fstatfs(fd_.get(), &sf) == 0 && is_remote_filesystem(static_cast<long>(sf.f_type))
              ? ReadPath::kPread
              : ReadPath::kMmap;
  }
  if (how == ReadPath::kMmap) {
    // A local file the kernel will not map (a /sys or /proc file, whose
    // size is not its content) or an exhausted address space: the caller
    // leaves it out, naming it.
    auto m = Mapping::map(fd_.get(), size);
    if (!m) return unexpected(m.error());
    map_ = std::move(m).value();
  }
  if (how == ReadPath::kPread) {
    // Readers read tensors front to back; a larger readahead window on the
    // lower filesystem keeps up with requests that arrive a little out of
    // order from our threads.
    ::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    open_direct();
  }
  read_path_ = how;
  return {};
}

namespace {
// A second descriptor of this very file (not of its path, which may name
// another file by now), with its own flags and readahead state; invalid if
// there is no /proc or the filesystem refuses the flags.
UniqueFd reopen(int fd, const struct stat& want, int flags) {
  const std::string self = "/proc/self/fd/" + std::to_string(fd);
  UniqueFd d(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags));
  struct stat st {};
  if (!d.valid() || ::fstat(d.get(), &st) != 0 || st.st_dev != want.st_dev ||
      st.st_ino != want.st_ino || !S_ISREG(st.st_mode)) {
    return UniqueFd();
  }
  return d;
}
}  // namespace

// A FUSE source is also opened with O_DIRECT: each of our reads then
// reaches the daemon below as one large request (split only at its
// max_read, sent in parallel), where buffered reads crawl through its
// page cache in readahead-sized steps, and nothing is cached twice below
// us. Measured over squashfuse_ll: 2.1-2.7 GiB/s against 0.7-0.8 (docs/
// PERFORMANCE.md). Other network filesystems keep their own client cache
// and readahead, which O_DIRECT would bypass.
void Model::open_direct() {
  struct statfs sf {};
  if (::fstatfs(fd_.get(), &sf) != 0 || static_cast<unsigned long>(sf.f_type) != 0x65735546UL) {
    return;
  }
  fuse_ = true;
  direct_fd_ = reopen(fd_.get(), st_, O_DIRECT);  // if refused: buffered reads only
}

const char* Model::read_path_name() const {
  // Large reads are spliced through the descriptor (read_reply.cpp).
  if (read_path_ == ReadPath::kMmap) return "splice and a shared mapping";
  return reads_direct() ? "pread (O_DIRECT)" : "pread";
}

Result<void> Model::read(void* buf, std::size_t len, std::uint64_t off, bool random) const {
  if (random && map_.data()) {
    // A small read of a mapped source, likely one of a random reader: from
    // a descriptor of its own with POSIX_FADV_RANDOM, so it reads just
    // these pages. A fault on the mapping (MADV_SEQUENTIAL) would read a
    // whole readahead window ahead of each one, and those pages, never
    // served, would stay. Its own descriptor also keeps the mapping's
    // readahead state undisturbed. Opened on first use.
    Served& s = *served_;
    std::call_once(s.random_once, [&] {
      s.random_fd = reopen(fd_.get(), st_, 0);
      if (s.random_fd.valid()) ::posix_fadvise(s.random_fd.get(), 0, 0, POSIX_FADV_RANDOM);
    });
    if (s.random_fd.valid()) return pread_full(s.random_fd.get(), buf, len, off);
  }
  if (reads_direct()) {
    auto r = read_below(direct_fd_.get(), buf, len, off);
    if (r || r.error().errnum != EINVAL) return r;
    // The daemon below passed O_DIRECT on to a filesystem that wants
    // aligned I/O (a passthrough over ext4 or XFS): buffered reads from
    // now on.
    if (!served_->direct_refused.exchange(true)) {
      spdlog::info("{}: O_DIRECT reads refused below ({}); reading through its page cache",
                   path_, r.error().message);
    }
  }
  return read_below(fd_.get(), buf, len, off);
}

namespace {
// How long an early end of a FUSE source is retried (read_below), and how
// often: past the attribute cache time of FUSE daemons' defaults (1 s for
// libfuse, bindfs, sshfs and rclone).
constexpr auto kLowerSizeWait = std::chrono::seconds(2);
constexpr auto kLowerSizeStep = std::chrono::milliseconds(50);
}  // namespace

// A FUSE daemon that names files by path (bindfs, sshfs, rclone: libfuse's
// high-level API) gives a file replaced below it the kernel inode of the
// one we hold open. A stat of the path then sets that inode's size to the
// new file's, and the kernel ends our reads of the old file there, O_DIRECT
// ones too, until the cached size expires and a read asks again through
// our own handle, which answers for the old file. So on a FUSE source an
// early end is read again for a while before it counts as a truncation: a
// reader of the replaced file waits for that expiry (1 s by default)
// instead of getting EIO.
Result<void> Model::read_below(int fd, void* buf, std::size_t len, std::uint64_t off) const {
  auto* p = static_cast<char*>(buf);
  const auto deadline = std::chrono::steady_clock::now() + kLowerSizeWait;
  while (true) {
    auto n = pread_upto(fd, p, len, off);
    if (!n) return unexpected(n.error());
    p += *n;
    len -= *n;
    off += *n;
    if (len == 0) return {};
    if (!fuse_ || std::chrono::steady_clock::now() >= deadline) {
      return unexpected(Error{EIO, "file shrank while being read"});
    }
    std::this_thread::sleep_for(kLowerSizeStep);
  }
}

void Model::shrink_intact(std::uint64_t now) const {
  std::uint64_t cur = intact_->load();
  // Only ever shrink: a file that grows back may hold other bytes.
  while (now < cur && !intact_->compare_exchange_weak(cur, now)) {
  }
}

std::string Model::truncation_message() const {
  return "source " + path_ + " shrank to " + std::to_string(intact()) +
         " bytes while mounted; reads past that fail with EIO";
}

Result<void> Model::check_intact(std::uint64_t end) const {
  auto truncated = [&] { return unexpected(Error{EIO, truncation_message()}); };
  // A request that reaches past what is left of a truncated source fails
  // whole: a short read would look like end of file to the reader.
  if (end > intact()) return truncated();
  // On the pread path a short read is the check (read()). From a mapping,
  // a source truncated into the middle of a page reads back as zeros past
  // its end (the kernel zero-fills the tail of a mapping's last page), and
  // no EFAULT tells us: so one fstat before every reply, answered from the
  // inode in memory.
  struct stat st {};
  if (read_path_ == ReadPath::kMmap &&
      (::fstat(fd_.get(), &st) != 0 || end > static_cast<std::uint64_t>(st.st_size))) {
    fault();
    return truncated();
  }
  return {};
}

void Model::fault() const {
  struct stat st {};
  std::uint64_t now = 0;  // if the size cannot be read, serve nothing more
  if (::fstat(fd_.get(), &st) == 0) now = static_cast<std::uint64_t>(st.st_size);
  shrink_intact(now);
}

namespace {
constexpr std::uint64_t kChunk = 2 << 20;
// Past this many chunks (a 2 TiB file) no counters are kept: single pages
// are dropped, page-aligned inward.
constexpr std::uint64_t kMaxChunks = 1 << 20;
}  // namespace

void Model::release_served(std::uint64_t offset, std::uint64_t size) const {
  const auto file = static_cast<std::uint64_t>(st_.st_size);
  if (size == 0 || offset >= file) return;
  size = std::min(size, file - offset);
  auto drop = [this](std::uint64_t begin, std::uint64_t end) {
    if (end <= begin) return;
    if (map_.data() && end <= map_.size()) {
      ::madvise(const_cast<char*>(map_.data()) + begin, end - begin, MADV_DONTNEED);
    }
    ::posix_fadvise(fd_.get(), static_cast<off_t>(begin), static_cast<off_t>(end - begin),
                    POSIX_FADV_DONTNEED);
  };
  const std::uint64_t chunks = (file + kChunk - 1) / kChunk;
  if (chunks > kMaxChunks) {
    static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
    drop((offset + page - 1) / page * page, (offset + size) / page * page);
    return;
  }
  Served& s = *served_;
  std::call_once(s.chunks_once, [&] {
    s.chunks = std::make_unique<std::atomic<std::uint32_t>[]>(chunks);
    // Bytes no read serves count as served: the header, and the last
    // chunk's part past the end of the file.
    const std::uint64_t head = parsed_ ? std::min(header_.data_start(), file) : 0;
    for (std::uint64_t c = 0; c * kChunk < head; ++c) {
      s.chunks[c] += static_cast<std::uint32_t>(std::min(head, (c + 1) * kChunk) - c * kChunk);
    }
    s.chunks[chunks - 1] += static_cast<std::uint32_t>(chunks * kChunk - file);
  });
  for (std::uint64_t c = offset / kChunk; c * kChunk < offset + size; ++c) {
    const std::uint64_t lo = std::max(offset, c * kChunk);
    const std::uint64_t hi = std::min(offset + size, (c + 1) * kChunk);
    const auto add = static_cast<std::uint32_t>(hi - lo);
    const std::uint32_t before = s.chunks[c].fetch_add(add, std::memory_order_relaxed);
    // Each time a chunk's count passes a multiple of its size, it has been
    // served whole once more (a first read, or a re-read after the mount's
    // copy was evicted): drop it then, never while half of it is still to
    // be read. Two views of one tensor read in step can shift a chunk's
    // count; then it goes at the next crossing instead.
    if (before / kChunk != (before + add) / kChunk) {
      drop(c * kChunk, std::min((c + 1) * kChunk, file));
    }
  }
}

void Model::populate(std::uint64_t offset, std::uint64_t size) const {
  static const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  if (!map_.data() || offset >= map_.size()) return;
  // Once: faults on the mapping read ahead only forward, never around the
  // fault (which would bring back pages behind a reader that were served
  // and dropped), in the device's readahead window, with the kernel's async
  // readahead after it: large I/Os ahead of a reader on a cold source. Our
  // own WILLNEED windows (with MADV_RANDOM) read a cold source at half that
  // speed, and walked cached pages on every request (docs/PERFORMANCE.md).
  std::call_once(served_->advice_once, [this] {
    ::madvise(const_cast<char*>(map_.data()), map_.size(), MADV_SEQUENTIAL);
  });
  const std::uint64_t begin = offset / page * page;
  const std::uint64_t end = std::min<std::uint64_t>(offset + size, map_.size());
  // Maps every page of the request in one call, so the kernel's copy into
  // the reply takes no fault per page.
  ::madvise(const_cast<char*>(map_.data()) + begin, end - begin,
            MADV_POPULATE_READ);  // EINVAL before Linux 5.14: faults then
}

Model Model::plain(UniqueFd fd, std::string path, const struct stat& st) {
  Model m;
  m.path_ = std::move(path);
  m.fd_ = std::move(fd);
  m.st_ = st;
  m.intact_->store(static_cast<std::uint64_t>(st.st_size));
  m.header_.file_size = static_cast<std::uint64_t>(st.st_size);
  return m;
}

Result<Model, ModelError> Model::open(const std::string& path, const Limits& limits,
                                       HeaderParser* parser) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    int e = errno;
    return unexpected(ModelError{ModelError::Kind::kIo, e, std::nullopt,
                                 std::string("cannot open: ") + std::strerror(e)});
  }
  UniqueFd owned(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    return unexpected(ModelError{ModelError::Kind::kIo, e, std::nullopt,
                                 std::string("cannot stat: ") + std::strerror(e)});
  }
  if (S_ISREG(st.st_mode)) {
    int fl = ::fcntl(fd, F_GETFL);
    if (fl >= 0) ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  }
  return load(std::move(owned), path, st, limits, parser);
}

namespace {

// A GGUF file has no header length: read a first slice, and more while the
// reader asks for it (it never asks past the file or the header cap).
Result<Header, ModelError> read_gguf(int fd, std::uint64_t size, const Limits& limits,
                                     std::string* kept) {
  std::string buf;
  std::uint64_t want = std::min<std::uint64_t>(size, 256 * 1024);
  while (true) {
    const std::size_t have = buf.size();
    buf.resize(static_cast<std::size_t>(want));
    if (auto r = pread_full(fd, buf.data() + have, buf.size() - have, have); !r) {
      const int e = r.error().errnum;
      return unexpected(ModelError{ModelError::Kind::kIo, e, std::nullopt,
                                   std::string("cannot read the GGUF header: ") + std::strerror(e)});
    }
    std::uint64_t more = 0;
    auto h = parse_gguf(buf, size, limits, &more);
    if (h) {
      if (kept) kept->assign(buf, 0, static_cast<std::size_t>(h->data_start()));
      return std::move(h).value();
    }
    if (more == 0) {
      return unexpected(
          ModelError{ModelError::Kind::kInvalid, 0, h.error().rule, std::move(h.error().message)});
    }
    // At least double, so a long header is read in a few slices.
    want = std::min<std::uint64_t>(size, std::max<std::uint64_t>(more, want * 2));
  }
}

}  // namespace

Result<Model, ModelError> Model::load(UniqueFd fd_in, std::string path, const struct stat& st,
                                      const Limits& limits, HeaderParser* parser,
                                      bool keep_header, std::optional<Format> expect) {
  auto io_error = [](int e, std::string what) {
    return unexpected(
        ModelError{ModelError::Kind::kIo, e, std::nullopt, what + ": " + std::strerror(e)});
  };
  Model m;
  m.path_ = std::move(path);
  m.fd_ = std::move(fd_in);
  m.st_ = st;
  m.intact_->store(static_cast<std::uint64_t>(st.st_size));
  const int fd = m.fd_.get();
  if (S_ISDIR(m.st_.st_mode)) return io_error(EISDIR, "cannot read");
  if (!S_ISREG(m.st_.st_mode)) {
    return unexpected(
        ModelError{ModelError::Kind::kInvalid, EINVAL, std::nullopt, "not a regular file"});
  }
  auto size = static_cast<std::uint64_t>(m.st_.st_size);
  char prefix[8] = {};
  std::size_t have = size < 8 ? static_cast<std::size_t>(size) : 8;
  if (auto r = pread_full(fd, prefix, have, 0); !r) {
    return io_error(r.error().errnum, "cannot read the header length");
  }
  // A file of another format keeps its rule but says what it looks like.
  const auto foreign = foreign_format(std::string_view(prefix, have));
  auto invalid = [&foreign](ParseError e) {
    return unexpected(ModelError{ModelError::Kind::kInvalid, 0, e.rule,
                                 foreign ? *foreign : std::move(e.message)});
  };
  const bool gguf = is_gguf(std::string_view(prefix, have));
  if (expect == Format::kGguf && !gguf) {
    return unexpected(ModelError{ModelError::Kind::kInvalid, 0, Rule::kGgufVersion,
                                 "not a GGUF file: no GGUF magic"});
  }
  if (expect == Format::kSafetensors && gguf) {
    // A loader goes by the name: X.safetensors must be safetensors.
    return unexpected(ModelError{ModelError::Kind::kInvalid, 0, std::nullopt,
                                 "the name says safetensors, the bytes are GGUF"});
  }
  if (gguf) {
    auto h = read_gguf(fd, size, limits, keep_header ? &m.header_bytes_ : nullptr);
    if (!h) return unexpected(std::move(h).error());
    m.header_ = std::move(h).value();
    m.parsed_ = true;
    return m;
  }
  auto n = parse_header_length(std::string_view(prefix, have), size, limits);
  if (!n) return invalid(n.error());
  // N is now known to fit inside the real file. The buffer carries the
  // parser's padding so the header is read once and never copied.
  const auto len = static_cast<std::size_t>(*n);
  std::string json(len + kJsonPadding, ' ');
  if (auto r = pread_full(fd, json.data(), len, 8); !r) {
    return io_error(r.error().errnum, "cannot read the header");
  }
  const std::string_view text(json.data(), len);
  auto h = parser ? parser->parse_padded(text, size, limits)
                  : parse_header_json_padded(text, size, limits);
  if (!h) return invalid(h.error());
  m.header_ = std::move(h).value();
  if (keep_header) {
    m.header_bytes_.reserve(8 + len);
    m.header_bytes_.append(prefix, 8).append(json.data(), len);
  }
  m.parsed_ = true;
  return m;
}

}  // namespace stfs
