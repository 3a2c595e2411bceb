// The stfs command line: parses arguments, dispatches, maps results to the
// exit codes of DESIGN.md §1 (0 ok, 1 usage, 2 invalid source, 3 mount failed).
#include <getopt.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "stfs/check.hpp"
#include "stfs/logging.hpp"

#ifndef STFS_VERSION
#define STFS_VERSION "unknown"
#endif

namespace {

constexpr int kExitUsage = 1;

const char kHelp[] =
    "Usage: stfs [options] SOURCE MOUNTPOINT\n"
    "       stfs --check FILE...\n"
    "       stfs --help | --version\n"
    "\n"
    "Mount a safetensors model file read-only: every tensor becomes a file of\n"
    "raw bytes, the header and metadata become JSON files.\n"
    "\n"
    "Options:\n"
    "  --check        validate each FILE and print one line per file:\n"
    "                   OK <file>: <n> tensors (<dtypes>)\n"
    "                   INVALID <file>: <reason> [<rule>]\n"
    "  -h, --help     show this help and exit\n"
    "  -V, --version  show the version and exit\n"
    "  -v, --verbose  log more\n"
    "\n"
    "Exit codes:\n"
    "  0  success\n"
    "  1  usage error\n"
    "  2  a source is not a valid safetensors file\n"
    "  3  the mount failed\n";

int usage_error(const char* msg) {
  std::fprintf(stderr, "stfs: %s\nTry 'stfs --help' for more information.\n", msg);
  return kExitUsage;
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
  bool check = false, verbose = false;
  opterr = 0;
  int c;
  while ((c = getopt_long(argc, argv, "+hVv", kLong, nullptr)) != -1) {
    switch (c) {
      case kOptCheck: check = true; break;
      case 'h': std::fputs(kHelp, stdout); return 0;
      case 'V': std::printf("stfs %s\n", STFS_VERSION); return 0;
      case 'v': verbose = true; break;
      default: {
        std::string msg = "unknown option '";
        msg += optopt ? std::string(1, static_cast<char>(optopt)) : argv[optind - 1];
        msg += "'";
        return usage_error(msg.c_str());
      }
    }
  }
  stfs::init_logging(stfs::LogTarget::kStderr, verbose, false);
  std::vector<std::string> args(argv + optind, argv + argc);
  if (check) {
    if (args.empty()) return usage_error("--check needs at least one FILE");
    return stfs::run_check(args, stdout);
  }
  return usage_error("missing --check (mounting is not available in this build yet)");
}
