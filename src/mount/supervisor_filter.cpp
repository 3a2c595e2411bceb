#include "stfs/mount/supervisor_filter.hpp"

#include <linux/capability.h>
#include <seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

namespace stfs {
namespace {

constexpr const char* kKilled[] = {
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "mount",
    "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    "pivot_root", "chroot", "unshare", "setns", "init_module", "finit_module", "delete_module",
    "bpf", "kexec_load", "kexec_file_load", "perf_event_open", "keyctl", "add_key", "request_key",
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "iopl", "ioperm", "reboot", "swapon",
    "swapoff", "acct", "settimeofday", "clock_settime", "adjtimex", "clock_adjtime",
    "quotactl", "lookup_dcookie", "vhangup", nullptr,
};

constexpr int kKept[] = {CAP_SYS_ADMIN, CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE,
                         CAP_SETUID,    CAP_SETGID,          CAP_SETPCAP};

bool kept(int cap) {
  for (int k : kKept) {
    if (k == cap) return true;
  }
  return false;
}

struct FilterDeleter {
  void operator()(void* f) const { seccomp_release(f); }
};

Result<void> limit_capabilities() {
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;
    if (!kept(cap) && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM) {
      return unexpected(Error{errno, "cannot limit the bounding set"});
    }
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return unexpected(Error{errno, "cannot read the capabilities"});
  }
  for (int i = 0; i < _LINUX_CAPABILITY_U32S_3; ++i) {
    std::uint32_t mask = 0;
    for (int k : kKept) {
      if (k / 32 == i) mask |= 1u << (k % 32);
    }
    data[i].permitted &= mask;
    data[i].effective &= mask;
    data[i].inheritable = 0;
  }
  if (::syscall(SYS_capset, &header, data) != 0) {
    return unexpected(Error{errno, "cannot drop capabilities"});
  }
  return {};
}

Result<void> install_filter() {
  std::unique_ptr<void, FilterDeleter> f(seccomp_init(SCMP_ACT_ALLOW));
  if (!f) return unexpected(Error{ENOMEM, "cannot create a seccomp filter"});
  int rc = 0;
  for (const char* const* n = kKilled; *n && rc == 0; ++n) {
    const int sys = seccomp_syscall_resolve_name(*n);
    if (sys != __NR_SCMP_ERROR) rc = seccomp_rule_add(f.get(), SCMP_ACT_KILL_PROCESS, sys, 0);
  }
  if (rc == 0) {
    rc = seccomp_rule_add(f.get(), SCMP_ACT_KILL_PROCESS, SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_NE, AF_UNIX));
  }
  if (rc == 0) rc = seccomp_load(f.get());
  if (rc != 0) {
    return unexpected(Error{-rc, std::string("cannot load the seccomp filter: ") +
                                     std::strerror(-rc)});
  }
  return {};
}

}  // namespace

Result<std::string> confine_supervisor() {
  if (::geteuid() != 0) {
    return unexpected(Error{EPERM, "an ordinary user's supervisor unmounts through fusermount3 "
                                   "(setuid), which no_new_privs and a filter would stop"});
  }
  if (auto r = limit_capabilities(); !r) return unexpected(r.error());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return unexpected(Error{errno, "cannot set no_new_privs"});
  }
  if (auto r = install_filter(); !r) return unexpected(r.error());
  return std::string("capabilities of unmounting and of starting daemons, no_new_privs, seccomp");
}

}  // namespace stfs
