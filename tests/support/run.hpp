// Runs a program and captures what it prints and how it exits.
#pragma once

#include <string>
#include <vector>

namespace stfs::test {

struct RunResult {
  int exit_code = -1;  // -1 if killed by a signal
  int signal = 0;
  std::string out;
  std::string err;
};

// Runs argv[0] with argv, no stdin, collecting stdout and stderr.
RunResult run(const std::vector<std::string>& argv);

}  // namespace stfs::test
