// A library preloaded into stfs by the takeover tests (test_takeover.py):
// it makes a daemon die while it serves one READ, the way a parser bug or
// a forbidden call would. The shipped binary has no such switch.
//
//   STFS_CRASH_AT=N      a source read (splice) covering byte N triggers it
//   STFS_CRASH_HOW=segv  a null write (SIGSEGV, a real fault)
//                =seccomp  execve, which the daemon's own filter kills (SIGSYS)
//   STFS_CRASH_WHO=first   only the first daemon (not one started for a
//                          takeover, which has STFS_SUPERVISOR_FD at start)
//                =every    every daemon: a request that kills whoever reads it
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace {

bool g_armed = false;
long long g_at = -1;
bool g_seccomp = false;

__attribute__((constructor)) void setup() {
  const char* at = std::getenv("STFS_CRASH_AT");
  if (!at) return;
  g_at = std::atoll(at);
  const char* how = std::getenv("STFS_CRASH_HOW");
  g_seccomp = how && std::strcmp(how, "seccomp") == 0;
  const char* who = std::getenv("STFS_CRASH_WHO");
  const bool every = who && std::strcmp(who, "every") == 0;
  g_armed = every || std::getenv("STFS_SUPERVISOR_FD") == nullptr;
}

using SpliceFn = ssize_t (*)(int, loff_t*, int, loff_t*, size_t, unsigned);

}  // namespace

extern "C" ssize_t splice(int fd_in, loff_t* off_in, int fd_out, loff_t* off_out, size_t len,
                          unsigned flags) {
  static SpliceFn real = reinterpret_cast<SpliceFn>(dlsym(RTLD_NEXT, "splice"));
  if (g_armed && off_in && *off_in <= g_at && g_at < *off_in + static_cast<loff_t>(len)) {
    struct stat st {};
    if (fstat(fd_in, &st) == 0 && S_ISREG(st.st_mode)) {
      if (g_seccomp) {
        char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
        execve("/bin/true", argv, argv + 1);
      }
      *static_cast<volatile int*>(nullptr) = 1;
    }
  }
  return real(fd_in, off_in, fd_out, off_out, len, flags);
}
