// The stfs command line: parses arguments, dispatches, and maps results to
// the exit codes of DESIGN.md §1 (0 ok, 1 usage, 2 invalid source, 3 mount
// failed).
#include <fcntl.h>
#include <getopt.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "stfs/source/check.hpp"
#include "stfs/mount/daemon.hpp"
#include "stfs/mount/fuse_session.hpp"
#include "stfs/mount/logging.hpp"
#include "stfs/mount/options.hpp"
#include "stfs/mount/supervisor.hpp"

#ifndef STFS_VERSION
#define STFS_VERSION "unknown"
#endif

namespace {

const char kHelp[] =
    "Usage: stfs [options] SOURCE MOUNTPOINT [options]\n"
    "       stfs --check FILE...\n"
    "       stfs --sandbox-test SOURCE [-o OPT]\n"
    "       stfs --restart MOUNTPOINT\n"
    "       stfs --help | --version\n"
    "\n"
    "Mount a safetensors or GGUF model file, or a folder of them, read-only:\n"
    "every tensor becomes a file of raw bytes, the header and metadata become\n"
    "__header__.json and __metadata__.json. Without -f, stfs returns once the\n"
    "mount answers.\n"
    "Unmount with 'fusermount3 -u MOUNTPOINT'.\n"
    "\n"
    "Options:\n"
    "  -f             stay in the foreground, log to stderr\n"
    "  -d             debug logging, including every FUSE request (implies -f)\n"
    "  -s             serve with one thread\n"
    "  -o OPT[,OPT]   mount options, below; may be repeated, later values win\n"
    "  --             end of options (for a SOURCE that starts with '-')\n"
    "Options may come before, between or after SOURCE and MOUNTPOINT.\n"
    "  -v, --verbose  log more\n"
    "  --check        validate each FILE (safetensors or GGUF), one line each:\n"
    "                   OK <file>: <format>, <n> tensors, <data size> (<dtypes>)\n"
    "                   INVALID <file>: <reason> [<rule>]\n"
    "  --sandbox-test apply the sandbox that a mount of SOURCE (with these -o\n"
    "                 options) would, try what an attacker would try (read\n"
    "                 outside the source, write, exec, connect, ptrace, regain\n"
    "                 privileges), print each result; exit 0 only if every\n"
    "                 attempt was refused\n"
    "  --restart      replace the daemon serving MOUNTPOINT with the stfs now\n"
    "                 installed at the path the mount was started from, while\n"
    "                 readers read (root and the mount's owner only); exit 0\n"
    "                 once the new daemon serves, 3 if the mount cannot be\n"
    "                 resumed (nothing changes then)\n"
    "  -h, --help     show this help and exit\n"
    "  -V, --version  show the version and exit\n"
    "\n";

const char kExitCodes[] =
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  usage error\n"
    "  2  a source is missing or not a valid safetensors or GGUF file\n"
    "  3  the mount failed, or the source cannot be read (I/O error)\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "stfs: %s\nTry 'stfs --help' for more information.\n", msg.c_str());
  return stfs::kExitUsage;
}

// mount(8)'s helper convention (mount.stfs, mount.fuse.stfs):
//   SPEC DIR [-sfnv] [-N ns] [-o opts] [-t type]
// -f is a fake run, -s sloppy, -n ignored (no mtab), -v verbose. The helper
// always daemonises and returns once the mount answers.
// What a takeover runs again (supervisor.hpp): the program at the path this
// one was started from, with the same arguments.
void remember_invocation(stfs::MountOptions& mo, int argc, char** argv) {
  char exe[PATH_MAX];
  const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) mo.exe.assign(exe, static_cast<std::size_t>(n));
  mo.argv.assign(argv, argv + argc);
}

int helper_main(int argc, char** argv) {
  stfs::MountOptions mo;
  remember_invocation(mo, argc, argv);
  mo.helper = true;
  std::vector<std::string> option_lists;
  const char* ns = nullptr;
  opterr = 0;
  int c;
  while ((c = getopt(argc, argv, "sfnvhN:o:t:")) != -1) {
    switch (c) {
      case 's': mo.sloppy = true; break;
      case 'f': mo.fake = true; break;
      case 'n': break;
      case 'v': mo.verbose = true; break;
      case 'N': ns = optarg; break;
      case 'o': option_lists.emplace_back(optarg); break;
      case 't': break;  // "stfs" or "fuse.stfs": we know what we are
      case 'h':
        std::fputs("Usage: mount.stfs SOURCE MOUNTPOINT [-sfnv] [-N ns] [-o opts]\n"
                   "Options may also come first; -o may be repeated, later values win.\n\n",
                   stdout);
        std::fputs(stfs::mount_options_help().data(), stdout);
        return 0;
      default:
        return usage_error(std::string("unknown option '-") + static_cast<char>(optopt) + "'");
    }
  }
  stfs::init_logging(stfs::LogTarget::kStderr, mo.verbose, false);
  // Repeated -o lists merge; sloppy applies to all of them.
  for (const std::string& list : option_lists) {
    if (auto r = stfs::apply_mount_options(list, mo); !r) return usage_error(r.error().message);
  }
  std::vector<std::string> args(argv + optind, argv + argc);
  if (args.size() != 2) return usage_error("expected SOURCE MOUNTPOINT");
  if (ns) {
    std::string path = std::string(ns).find_first_not_of("0123456789") == std::string::npos
                           ? "/proc/" + std::string(ns) + "/ns/mnt"
                           : std::string(ns);
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNS) != 0) {
      std::fprintf(stderr, "stfs: cannot enter mount namespace %s: %s\n", ns, std::strerror(errno));
      return stfs::kExitMountFailed;
    }
    ::close(fd);
  }
  mo.source = args[0];
  mo.mountpoint = args[1];
  mo.foreground = false;
  return stfs::run_mount(std::move(mo));
}

bool is_helper_name(const char* argv0) {
  std::string_view name = argv0;
  if (auto slash = name.rfind('/'); slash != std::string_view::npos) name.remove_prefix(slash + 1);
  return name == "mount.stfs" || name == "mount.fuse.stfs";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 0 && is_helper_name(argv[0])) return helper_main(argc, argv);
  enum { kOptCheck = 1000, kOptSandboxTest, kOptRestart };
  static const option kLong[] = {
      {"check", no_argument, nullptr, kOptCheck},
      {"restart", no_argument, nullptr, kOptRestart},
      {"sandbox-test", no_argument, nullptr, kOptSandboxTest},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {"verbose", no_argument, nullptr, 'v'},
      {nullptr, 0, nullptr, 0},
  };
  bool check = false;
  bool restart = false;
  stfs::MountOptions mo;
  remember_invocation(mo, argc, argv);
  opterr = 0;
  int c;
  // Options go anywhere, as with sshfs and squashfuse: getopt permutes, so
  // `stfs SRC MNT -o npy` works; "--" ends them, for a path starting "-".
  while ((c = getopt_long(argc, argv, "hVvfdso:", kLong, nullptr)) != -1) {
    switch (c) {
      case kOptCheck: check = true; break;
      case kOptRestart: restart = true; break;
      case kOptSandboxTest: mo.sandbox_test = true; break;
      case 'h':
        std::fputs(kHelp, stdout);
        std::fputs(stfs::mount_options_help().data(), stdout);
        std::fputs(kExitCodes, stdout);
        return 0;
      case 'V':
        std::printf("stfs %s (libfuse %s)\n", STFS_VERSION, stfs::libfuse_version());
        return 0;
      case 'v': mo.verbose = true; break;
      case 'f': mo.foreground = true; break;
      case 'd': mo.debug = mo.foreground = true; break;
      case 's': mo.single_thread = true; break;
      case 'o':
        if (auto r = stfs::apply_mount_options(optarg, mo); !r) {
          return usage_error(r.error().message);
        }
        break;
      default: {
        if (optopt == 'o') return usage_error("option '-o' needs an argument");
        std::string opt = optopt ? std::string("-") + static_cast<char>(optopt) : argv[optind - 1];
        return usage_error("unknown option '" + opt + "'");
      }
    }
  }
  stfs::init_logging(stfs::LogTarget::kStderr, mo.verbose, mo.debug);
  std::vector<std::string> args(argv + optind, argv + argc);
  if (check) {
    if (args.empty()) return usage_error("--check needs at least one FILE");
    return stfs::run_check(args, stdout, mo.limits);
  }
  if (restart) {
    if (args.size() != 1) return usage_error("--restart needs one MOUNTPOINT");
    return stfs::run_restart(args[0]);
  }
  if (mo.sandbox_test) {
    if (args.size() != 1) return usage_error("--sandbox-test needs one SOURCE");
    mo.source = args[0];
    return stfs::run_mount(std::move(mo));
  }
  if (args.size() != 2) {
    return usage_error(args.size() < 2 ? "missing SOURCE or MOUNTPOINT"
                                       : "too many arguments: expected SOURCE MOUNTPOINT");
  }
  mo.source = args[0];
  mo.mountpoint = args[1];
  return stfs::run_mount(std::move(mo));
}
