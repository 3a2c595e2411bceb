// The seccomp allow-list of a serving daemon (libseccomp).
//
// Three outcomes, chosen per call:
// - allowed: what serving needs (reads, mappings, the FUSE device, inotify,
//   polling, threads, logging and sd_notify on sockets opened before);
// - EPERM: everything else, so that a library that probes a call it can do
//   without (a new unix socket to reconnect syslog, a fork) degrades rather
//   than kills the mount;
// - kill the process: what only an attacker wants (exec, ptrace, reading
//   another process, network sockets and connect, mount, uid and capability
//   changes, modules, bpf, namespaces, file handles). Dying there is the
//   safe outcome: the mount ends, auto_unmount's watcher cleans up.
// Arguments narrow some allowed calls: clone only for threads, tgkill only
// to ourselves, openat only read-only, no executable mappings, ioctl only
// to ask whether a stream is a terminal, prctl only for thread names.
#include <fcntl.h>
#include <linux/sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "stfs/mount/sandbox.hpp"

namespace stfs {
namespace {

constexpr const char* kAllowed[] = {
    // files already open, and read-only opens (openat is narrowed below)
    "read", "readv", "pread64", "preadv", "preadv2", "write", "writev", "pwrite64", "close",
    "close_range",
    "fstat", "newfstatat", "statx", "lstat", "stat", "lseek", "getdents64", "readlink",
    "readlinkat", "access", "faccessat", "faccessat2", "fcntl", "dup", "dup2", "dup3",
    "fadvise64", "readahead", "statfs", "fstatfs", "getxattr", "lgetxattr", "fgetxattr",
    "listxattr", "llistxattr", "flistxattr", "getcwd",
    // the FUSE device (libfuse may move data through pipes)
    "pipe2", "splice", "vmsplice", "tee",
    // memory (mmap and mprotect are narrowed below)
    "munmap", "mremap", "madvise", "mincore", "brk", "msync",
    // threads, signals, time
    "futex", "set_robust_list", "get_robust_list", "rseq", "exit", "exit_group", "rt_sigaction",
    "rt_sigprocmask", "rt_sigreturn", "rt_sigtimedwait", "rt_sigpending", "sigaltstack", "gettid",
    "getpid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups", "getresuid",
    "getresgid", "sched_yield", "sched_getaffinity", "nanosleep", "clock_nanosleep",
    "clock_gettime", "clock_getres", "gettimeofday", "time", "restart_syscall", "membarrier",
    "getrandom", "uname", "sysinfo", "getrusage",
    // waiting: the watcher, the poller, the stop thread
    "poll", "ppoll", "select", "pselect6", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "eventfd2", "inotify_init1", "inotify_add_watch", "inotify_rm_watch",
    // syslog and sd_notify, on sockets connected before the sandbox
    "sendto", "sendmsg", "getsockname", "getsockopt",
    // the supervisor's socket (supervisor_link.hpp): retire, resend, unmounted
    "recvmsg", "recvfrom",
};

constexpr const char* kKilled[] = {
    "execve", "execveat", "fork", "vfork", "ptrace", "process_vm_readv", "process_vm_writev",
    "connect", "bind", "listen", "accept", "accept4", "mount", "umount2", "pivot_root", "chroot",
    "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig", "setuid", "setgid", "setreuid",
    "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "setgroups", "capset",
    "init_module", "finit_module", "delete_module", "bpf", "kexec_load", "kexec_file_load",
    "perf_event_open", "keyctl", "add_key", "request_key", "unshare", "setns",
    "open_by_handle_at", "name_to_handle_at", "userfaultfd", "iopl", "ioperm", "reboot",
    "swapon", "swapoff", "personality", "process_madvise", "pidfd_getfd", "kcmp",
};

struct FilterDeleter {
  void operator()(void* f) const { seccomp_release(f); }
};

int nr(const char* name) { return seccomp_syscall_resolve_name(name); }

}  // namespace

Result<void> install_syscall_filter() {
  std::unique_ptr<void, FilterDeleter> f(seccomp_init(SCMP_ACT_ERRNO(EPERM)));
  if (!f) return unexpected(Error{ENOMEM, "cannot create a seccomp filter"});
  void* ctx = f.get();
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);  // every thread, now
  auto add = [&](std::uint32_t action, const char* name, unsigned n = 0,
                 scmp_arg_cmp a = {}, scmp_arg_cmp b = {}) {
    const int sys = nr(name);
    if (sys == __NR_SCMP_ERROR || rc != 0) return;  // a call this kernel lacks
    if (n == 0) rc = seccomp_rule_add(ctx, action, sys, 0);
    if (n == 1) rc = seccomp_rule_add(ctx, action, sys, 1, a);
    if (n == 2) rc = seccomp_rule_add(ctx, action, sys, 2, a, b);
  };
  for (const char* name : kAllowed) add(SCMP_ACT_ALLOW, name);
  for (const char* name : kKilled) add(SCMP_ACT_KILL_PROCESS, name);

  constexpr scmp_datum_t kWrites = O_ACCMODE | O_CREAT | O_TRUNC;
  add(SCMP_ACT_ALLOW, "openat", 1, SCMP_A2(SCMP_CMP_MASKED_EQ, kWrites, 0));
  add(SCMP_ACT_ALLOW, "open", 1, SCMP_A1(SCMP_CMP_MASKED_EQ, kWrites, 0));
  add(SCMP_ACT_ERRNO(ENOSYS), "openat2");  // glibc falls back to openat
  add(SCMP_ACT_ALLOW, "mmap", 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  add(SCMP_ACT_ALLOW, "mprotect", 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  // Threads: clone3's flags sit in memory a filter cannot read, so glibc
  // is told it is missing and uses clone, whose flags we can check.
  add(SCMP_ACT_ERRNO(ENOSYS), "clone3");
  add(SCMP_ACT_ALLOW, "clone", 1, SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
  add(SCMP_ACT_ALLOW, "tgkill", 1, SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid())));
  add(SCMP_ACT_ALLOW, "ioctl", 1, SCMP_A1(SCMP_CMP_EQ, TCGETS));
  add(SCMP_ACT_ALLOW, "prctl", 1, SCMP_A0(SCMP_CMP_EQ, PR_SET_NAME));
  add(SCMP_ACT_ALLOW, "prctl", 1, SCMP_A0(SCMP_CMP_EQ, PR_GET_NAME));
  add(SCMP_ACT_ALLOW, "prlimit64", 1, SCMP_A2(SCMP_CMP_EQ, 0));  // reading a limit
  // A new socket: unix ones fail (syslog's reconnect), any other kills.
  add(SCMP_ACT_KILL_PROCESS, "socket", 1, SCMP_A0(SCMP_CMP_NE, AF_UNIX));
  if (rc != 0) return unexpected(Error{-rc, std::string("cannot build the seccomp filter: ") +
                                                std::strerror(-rc)});
  rc = seccomp_load(ctx);
  if (rc != 0) {
    return unexpected(Error{-rc, std::string("cannot load the seccomp filter: ") +
                                     std::strerror(-rc)});
  }
  return {};
}

}  // namespace stfs
