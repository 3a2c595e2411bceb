#include "stfs/source/mapping.hpp"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace stfs {

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (addr_) ::munmap(addr_, size_);
    addr_ = std::exchange(o.addr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Mapping::~Mapping() {
  if (addr_) ::munmap(addr_, size_);
}

Result<Mapping> Mapping::map(int fd, std::uint64_t size) {
  Mapping m;
  if (size == 0) return m;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot map the source: ") + std::strerror(e)});
  }
  m.addr_ = p;
  m.size_ = size;
  return m;
}

}  // namespace stfs
