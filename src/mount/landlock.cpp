// Landlock: from here on, this process opens files only for reading, and
// only beneath the given paths; no write, create, remove or exec anywhere.
// Raw system calls with the ABI's constants spelt out here, since Debian
// 12's headers (Linux 6.1) stop at ABI 2; the kernel says which ABI it
// speaks and we handle every right it knows.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "stfs/base/unique_fd.hpp"
#include "stfs/mount/sandbox.hpp"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

namespace stfs {
namespace {

constexpr std::uint32_t kCreateRulesetVersion = 1u << 0;
constexpr int kRulePathBeneath = 1;
constexpr std::uint64_t kFsExecute = 1ull << 0;
constexpr std::uint64_t kFsReadFile = 1ull << 2;
constexpr std::uint64_t kFsReadDir = 1ull << 3;
// ABI 1 knows rights 0-12; 2 adds REFER (13); 3 TRUNCATE (14); 5 IOCTL_DEV (15).
constexpr std::uint64_t fs_rights(int abi) {
  std::uint64_t r = (1ull << 13) - 1;
  if (abi >= 2) r |= 1ull << 13;
  if (abi >= 3) r |= 1ull << 14;
  if (abi >= 5) r |= 1ull << 15;
  return r;
}
// ABI 4: TCP bind and connect; ABI 6: signals only within the sandbox.
constexpr std::uint64_t kNetBindTcp = 1ull << 0;
constexpr std::uint64_t kNetConnectTcp = 1ull << 1;
// Not abstract sockets: a datagram to systemd's notify socket is checked at
// every send, and that socket may be abstract (sd_notify.cpp).
constexpr std::uint64_t kScopeSignal = 1ull << 1;

struct RulesetAttr {
  std::uint64_t handled_access_fs;
  std::uint64_t handled_access_net;
  std::uint64_t scoped;
};

struct __attribute__((packed)) PathBeneathAttr {
  std::uint64_t allowed_access;
  std::int32_t parent_fd;
};

Error sys_error(const std::string& what) {
  int e = errno;
  return Error{e, what + ": " + std::strerror(e)};
}

}  // namespace

Result<bool> restrict_paths(const std::vector<std::string>& read_beneath) {
  const long abi = ::syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  if (abi < 0) {
    // No Landlock in this kernel, disabled at boot, or a seccomp filter
    // around us (a container's) that does not know the calls.
    if (errno == ENOSYS || errno == EOPNOTSUPP || errno == EPERM) return false;
    return unexpected(sys_error("cannot ask for the Landlock ABI"));
  }
  RulesetAttr attr{fs_rights(static_cast<int>(abi)), 0, 0};
  std::size_t size = sizeof attr.handled_access_fs;
  if (abi >= 4) {
    attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
    size = offsetof(RulesetAttr, scoped);
  }
  if (abi >= 6) {
    attr.scoped = kScopeSignal;
    size = sizeof attr;
  }
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0)));
  if (!ruleset.valid()) return unexpected(sys_error("cannot create a Landlock ruleset"));
  for (const std::string& path : read_beneath) {
    UniqueFd fd(::open(path.c_str(), O_PATH | O_CLOEXEC));
    struct stat st {};
    if (!fd.valid() || ::fstat(fd.get(), &st) != 0) {
      return unexpected(sys_error("cannot open " + path + " for the sandbox"));
    }
    // Reading only: never kFsExecute, nor any right that writes.
    PathBeneathAttr rule{S_ISDIR(st.st_mode) ? kFsReadFile | kFsReadDir : kFsReadFile, fd.get()};
    static_assert((kFsReadFile & kFsExecute) == 0);
    if (::syscall(SYS_landlock_add_rule, ruleset.get(), kRulePathBeneath, &rule, 0) != 0) {
      return unexpected(sys_error("cannot allow reading beneath " + path));
    }
  }
  if (::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0) {
    return unexpected(sys_error("cannot apply the Landlock ruleset"));
  }
  return true;
}

}  // namespace stfs
