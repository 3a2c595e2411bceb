// stfs --sandbox-test SOURCE: the proof that the confinement holds. Each
// attempt runs in a child of its own that applies exactly the sandbox a
// mount of SOURCE would, then tries one thing an attacker would try. A
// child killed by seccomp (SIGSYS) was refused too.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "stfs/base/paths.hpp"
#include "stfs/mount/sandbox.hpp"
#include "stfs/mount/supervisor_filter.hpp"

namespace stfs {
namespace {

// An attempt returns 0 when it got through, else the errno that refused it.
struct Attempt {
  std::string what;
  std::function<int()> run;
  bool must_succeed = false;  // a read the mount needs: the sandbox is not just "deny all"
};

int err_or_ok(long rc) { return rc < 0 ? errno : 0; }

// What the ptrace attempt attaches to: a process of our own, forked before
// each attempt and killed after it.
pid_t g_target = -1;

// A folder made for the supervisor's unmount attempt, and removed after.
std::string g_not_a_mount;

// An exec that got through exits with this.
constexpr int kExecStatus = 42;

int try_open(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
  if (fd < 0) return errno;
  ::close(fd);
  if (flags & O_CREAT) ::unlink(path.c_str());  // we made it: leave nothing behind
  return 0;
}

std::string folder_of(const std::string& source) {
  struct stat st {};
  if (::stat(source.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return source;
  return parent_of(source);
}

// A file beneath the source, to show reads that serving needs still work.
std::string some_file(const std::string& source) {
  struct stat st {};
  if (::stat(source.c_str(), &st) == 0 && !S_ISDIR(st.st_mode)) return source;
  // The first regular file found at the top of the folder, if any.
  std::string found;
  if (DIR* d = ::opendir(source.c_str())) {
    while (dirent* e = ::readdir(d)) {
      std::string p = source + "/" + e->d_name;
      if (::lstat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        found = p;
        break;
      }
    }
    ::closedir(d);
  }
  return found;
}

std::vector<Attempt> attempts(const std::string& source, int opened_before) {
  const std::string folder = folder_of(source);
  std::vector<Attempt> a = {
      {"read /etc/shadow", [] { return try_open("/etc/shadow", O_RDONLY); }},
      {"read /etc/passwd (outside the source)", [] { return try_open("/etc/passwd", O_RDONLY); }},
      {"list /root", [] { return try_open("/root", O_RDONLY | O_DIRECTORY); }},
      {"create a file in the source's folder",
       [folder] { return try_open(folder + "/.stfs-sandbox-test", O_WRONLY | O_CREAT | O_EXCL); }},
      {"create a file in /tmp",
       [] { return try_open("/tmp/.stfs-sandbox-test", O_WRONLY | O_CREAT | O_EXCL); }},
      {"open the source for writing", [source] { return try_open(source, O_WRONLY); }},
      {"exec /bin/sh",
       [] {
         ::execl("/bin/sh", "sh", "-c", "exit 42", static_cast<char*>(nullptr));
         return errno;
       }},
      {"open a TCP socket and connect to 127.0.0.1:22",
       [] {
         int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         if (fd < 0) return errno;
         sockaddr_in sin{};
         sin.sin_family = AF_INET;
         sin.sin_port = htons(22);
         sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
         int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
         int e = errno;
         ::close(fd);
         // Refused by the peer is not refused by the sandbox.
         return rc == 0 || e == ECONNREFUSED ? 0 : e;
       }},
      {"ptrace another process",
       [] {
         const long rc = ::ptrace(PTRACE_ATTACH, g_target, 0, 0);
         return rc == 0 ? (::ptrace(PTRACE_DETACH, g_target, 0, 0), 0) : errno;
       }},
      {"setuid(0)", [] { return err_or_ok(::setuid(0)); }},
      {"raise every capability",
       [] {
         __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
         __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3];
         std::memset(d, 0xff, sizeof d);
         return err_or_ok(::syscall(SYS_capset, &h, d));
       }},
      {"map executable memory",
       [] {
         void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         return p == MAP_FAILED ? errno : 0;
       }},
      {"signal another process (pid 1)", [] { return err_or_ok(::kill(1, 0)); }},
  };
  if (opened_before >= 0) {
    a.push_back({"read the source through a descriptor opened before",
                 [opened_before] {
                   char b;
                   return ::pread(opened_before, &b, 1, 0) >= 0 ? 0 : errno;
                 },
                 true});
  }
  return a;
}

// Runs each attempt in a child that confines itself with `confine` first;
// prints each verdict; true if every one held.
bool run_attempts(const std::vector<Attempt>& list, const std::function<bool()>& confine) {
  bool all_held = true;
  for (const Attempt& a : list) {
    std::fflush(stdout);
    // Before the pipe, so that it holds no end of it; killed below.
    g_target = ::fork();
    if (g_target == 0) {
      while (true) ::pause();
    }
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return false;
    pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      int result = -1;
      if (confine()) result = a.run();
      ssize_t n = ::write(pipefd[1], &result, sizeof result);
      ::_exit(n == sizeof result ? 0 : 1);
    }
    ::close(pipefd[1]);
    int result = -2;
    ssize_t n = ::read(pipefd[0], &result, sizeof result);
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ::kill(g_target, SIGKILL);
    ::waitpid(g_target, nullptr, 0);
    std::string verdict;
    bool ok;
    if (n != sizeof result && WIFEXITED(status) && WEXITSTATUS(status) == kExecStatus) {
      verdict = "ALLOWED";
      ok = false;
    } else if (n != sizeof result && WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS) {
      verdict = "refused: killed by seccomp (SIGSYS)";
      ok = !a.must_succeed;
    } else if (n != sizeof result || result == -1) {
      verdict = "error: the sandbox could not be applied";
      ok = false;
    } else if (result == 0) {
      verdict = a.must_succeed ? "allowed, as serving needs" : "ALLOWED";
      ok = a.must_succeed;
    } else {
      verdict = std::string("refused: ") + std::strerror(result);
      ok = !a.must_succeed;
    }
    std::printf("  %-60s %s\n", a.what.c_str(), verdict.c_str());
    all_held = all_held && ok;
  }
  return all_held;
}

// What the supervisor's confinement must refuse (supervisor_filter.hpp),
// and the one call of its own it must keep.
std::vector<Attempt> supervisor_attempts() {
  return {
      {"supervisor: ptrace another process",
       [] {
         const long rc = ::ptrace(PTRACE_ATTACH, g_target, 0, 0);
         return rc == 0 ? (::ptrace(PTRACE_DETACH, g_target, 0, 0), 0) : errno;
       }},
      {"supervisor: mount a tmpfs", [] { return err_or_ok(::mount("none", "/tmp", "tmpfs", 0, nullptr)); }},
      {"supervisor: enter a new mount namespace", [] { return err_or_ok(::unshare(CLONE_NEWNS)); }},
      {"supervisor: open a TCP socket",
       [] {
         int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
         if (fd < 0) return errno;
         ::close(fd);
         return 0;
       }},
      {"supervisor: load a kernel module", [] { return err_or_ok(::syscall(SYS_finit_module, -1, "", 0)); }},
      {"supervisor: hold CAP_SYS_MODULE or CAP_NET_ADMIN",
       [] {
         __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
         __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3]{};
         if (::syscall(SYS_capget, &h, d) != 0) return errno;
         const bool has = (d[0].effective | d[0].permitted) &
                          ((1u << CAP_SYS_MODULE) | (1u << CAP_NET_ADMIN));
         return has ? 0 : EPERM;
       }},
      {"supervisor: unmount (what it is for: EINVAL on a new folder, which is no mount)",
       [] {
         const int e = err_or_ok(::umount2(g_not_a_mount.c_str(), UMOUNT_NOFOLLOW));
         return e == EINVAL ? 0 : e;
       },
       true},
  };
}

}  // namespace

int run_sandbox_test(const SandboxPlan& plan, const std::string& source) {
  std::printf("sandbox test of %s\n", source.c_str());
  if (!plan.enabled) {
    std::printf("  sandbox off (-o sandbox=off): nothing is confined\n");
  } else {
    std::printf("  reads allowed beneath:%s\n", plan.read_beneath.empty() ? " nothing" : "");
  }
  for (const std::string& p : plan.read_beneath) std::printf("    %s\n", p.c_str());
  std::string inside = some_file(source);
  int opened = inside.empty() ? -1 : ::open(inside.c_str(), O_RDONLY | O_CLOEXEC);
  auto list = attempts(source, opened);
  if (!plan.read_beneath.empty() && !inside.empty()) {
    list.push_back({"open a file beneath the source (" + inside + ")",
                    [inside] { return try_open(inside, O_RDONLY); }, true});
  }
  bool all_held = run_attempts(list, [&plan] { return apply_sandbox(plan).has_value(); });
  if (::geteuid() == 0) {
    std::printf("the supervisor (holds the mount's connection; confined as root only):\n");
    char dir[] = "/tmp/stfs-sandbox-test-XXXXXX";
    if (!::mkdtemp(dir)) return 3;
    g_not_a_mount = dir;
    all_held = run_attempts(supervisor_attempts(), [] {
                 return confine_supervisor().has_value();
               }) && all_held;
    ::rmdir(dir);
  } else {
    std::printf("the supervisor: not confined for an ordinary user (it unmounts through "
                "fusermount3, which no_new_privs would stop)\n");
  }
  if (opened >= 0) ::close(opened);
  std::printf("%s\n", all_held ? "every attempt was refused" : "the sandbox does NOT hold");
  return all_held ? 0 : 1;
}

}  // namespace stfs
