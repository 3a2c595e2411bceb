// A library preloaded into stfs by the takeover tests (test_takeover.py):
// it makes a daemon die while it serves one READ, the way a parser bug or
// a forbidden call would. The shipped binary has no such switch.
//
//   STFS_CRASH_AT=N      a source read (splice) covering byte N triggers it
//                =init   the daemon is SIGKILLed as it answers the kernel's
//                        INIT: read (and handed to the supervisor), never
//                        answered
//   STFS_CRASH_HOW=segv  a null write (SIGSEGV, a real fault)
//                =seccomp  execve, which the daemon's own filter kills (SIGSYS)
//                =oom   memory touched until the kernel's OOM killer ends it
//                       (the test puts the mount in a memory cgroup)
//   STFS_CRASH_WHO=first   only the first daemon (not one started for a
//                          takeover, which has STFS_SUPERVISOR_FD at start)
//                =every    every daemon: a request that kills whoever reads it
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace {

bool g_armed = false;
long long g_at = -1;
bool g_seccomp = false;
bool g_oom = false;
bool g_at_init = false;
std::atomic<std::uint64_t> g_init_unique{0};

__attribute__((constructor)) void setup() {
  const char* at = std::getenv("STFS_CRASH_AT");
  if (!at) return;
  g_at_init = std::strcmp(at, "init") == 0;
  g_at = g_at_init ? -1 : std::atoll(at);
  const char* how = std::getenv("STFS_CRASH_HOW");
  g_seccomp = how && std::strcmp(how, "seccomp") == 0;
  g_oom = how && std::strcmp(how, "oom") == 0;
  const char* who = std::getenv("STFS_CRASH_WHO");
  const bool every = who && std::strcmp(who, "every") == 0;
  g_armed = every || std::getenv("STFS_SUPERVISOR_FD") == nullptr;
}

using SpliceFn = ssize_t (*)(int, loff_t*, int, loff_t*, size_t, unsigned);
using ReadFn = ssize_t (*)(int, void*, size_t);
using WritevFn = ssize_t (*)(int, const iovec*, int);

bool is_fuse_device(int fd) {
  struct stat st {};
  return fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 10 &&
         minor(st.st_rdev) == 229;
}

}  // namespace

extern "C" ssize_t splice(int fd_in, loff_t* off_in, int fd_out, loff_t* off_out, size_t len,
                          unsigned flags) {
  static SpliceFn real = reinterpret_cast<SpliceFn>(dlsym(RTLD_NEXT, "splice"));
  if (g_armed && off_in && *off_in <= g_at && g_at < *off_in + static_cast<loff_t>(len)) {
    struct stat st {};
    if (fstat(fd_in, &st) == 0 && S_ISREG(st.st_mode)) {
      if (g_oom) {
        for (;;) {  // 1 MiB at a time, each page written: real, charged memory
          auto* p = static_cast<volatile char*>(std::malloc(1 << 20));
          for (int i = 0; p && i < (1 << 20); i += 4096) p[i] = 1;
        }
      }
      if (g_seccomp) {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        execve("/bin/true", argv, argv + 1);
      }
      *static_cast<volatile int*>(nullptr) = 1;
    }
  }
  return real(fd_in, off_in, fd_out, off_out, len, flags);
}

extern "C" ssize_t read(int fd, void* buf, size_t len) {
  static ReadFn real = reinterpret_cast<ReadFn>(dlsym(RTLD_NEXT, "read"));
  const ssize_t n = real(fd, buf, len);
  if (g_armed && g_at_init && n >= static_cast<ssize_t>(sizeof(fuse_in_header))) {
    fuse_in_header h;
    std::memcpy(&h, buf, sizeof h);
    if (h.opcode == FUSE_INIT && is_fuse_device(fd)) g_init_unique = h.unique;
  }
  return n;
}

extern "C" ssize_t writev(int fd, const iovec* iov, int count) {
  static WritevFn real = reinterpret_cast<WritevFn>(dlsym(RTLD_NEXT, "writev"));
  if (g_armed && g_at_init && count > 0 && iov[0].iov_len >= sizeof(fuse_out_header)) {
    fuse_out_header h;
    std::memcpy(&h, iov[0].iov_base, sizeof h);
    if (h.unique != 0 && h.unique == g_init_unique && is_fuse_device(fd)) raise(SIGKILL);
  }
  return real(fd, iov, count);
}
