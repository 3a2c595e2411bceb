// The stfs command line: parses arguments, dispatches, and maps results to
// the exit codes of DESIGN.md §1 (0 ok, 1 usage, 2 invalid source, 3 mount
// failed).
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "stfs/check.hpp"
#include "stfs/daemon.hpp"
#include "stfs/logging.hpp"
#include "stfs/options.hpp"

#ifndef STFS_VERSION
#define STFS_VERSION "unknown"
#endif

namespace {

const char kHelp[] =
    "Usage: stfs [options] SOURCE MOUNTPOINT\n"
    "       stfs --check FILE...\n"
    "       stfs --help | --version\n"
    "\n"
    "Mount a safetensors model file read-only: every tensor becomes a file of\n"
    "raw bytes, the header and metadata become __header__.json and\n"
    "__metadata__.json. Without -f, stfs returns once the mount answers.\n"
    "Unmount with 'fusermount3 -u MOUNTPOINT'.\n"
    "\n"
    "Options:\n"
    "  -f             stay in the foreground, log to stderr\n"
    "  -d             debug logging, including every FUSE request (implies -f)\n"
    "  -s             serve with one thread\n"
    "  -o OPT[,OPT]   mount options, below; may be repeated\n"
    "  -v, --verbose  log more\n"
    "  --check        validate each FILE and print one line per file:\n"
    "                   OK <file>: <n> tensors (<dtypes>)\n"
    "                   INVALID <file>: <reason> [<rule>]\n"
    "  -h, --help     show this help and exit\n"
    "  -V, --version  show the version and exit\n"
    "\n";

const char kExitCodes[] =
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  usage error\n"
    "  2  a source is not a valid safetensors file\n"
    "  3  the mount failed\n";

int usage_error(const std::string& msg) {
  std::fprintf(stderr, "stfs: %s\nTry 'stfs --help' for more information.\n", msg.c_str());
  return stfs::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  enum { kOptCheck = 1000 };
  static const option kLong[] = {
      {"check", no_argument, nullptr, kOptCheck},
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, 'V'},
      {"verbose", no_argument, nullptr, 'v'},
      {nullptr, 0, nullptr, 0},
  };
  bool check = false;
  stfs::MountOptions mo;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+hVvfdso:", kLong, nullptr)) != -1) {
    switch (c) {
      case kOptCheck: check = true; break;
      case 'h':
        std::fputs(kHelp, stdout);
        std::fputs(stfs::mount_options_help().data(), stdout);
        std::fputs(kExitCodes, stdout);
        return 0;
      case 'V': std::printf("stfs %s\n", STFS_VERSION); return 0;
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
  if (args.size() != 2) {
    return usage_error(args.size() < 2 ? "missing SOURCE or MOUNTPOINT"
                                       : "too many arguments: expected SOURCE MOUNTPOINT");
  }
  mo.source = args[0];
  mo.mountpoint = args[1];
  return stfs::run_mount(std::move(mo));
}
