// The daemon's confinement: applied once the mount is up, before the first
// request is served, so that a bug anywhere in the serving path (libfuse,
// simdjson, spdlog, our scan or JSON writer) owns a process that cannot
// read outside its source, write, exec, connect or regain a privilege.
//
// In order: switch user (-o user=), keep only the capability the source
// needs, no_new_privs, Landlock (reads beneath the plan's paths, no write
// or exec anywhere), then a seccomp allow-list (syscall_filter.cpp says
// which calls fail with EPERM and which kill). README "Security model".
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "stfs/base/result.hpp"

namespace stfs {

class Tree;
struct MountOptions;

struct SandboxPlan {
  bool enabled = true;
  // What may still be opened, for reading only: beneath each folder, or
  // that one file. Empty: nothing (every file is open already).
  std::vector<std::string> read_beneath;
  // Root serving a folder whose files other users own keeps
  // CAP_DAC_READ_SEARCH, and nothing else.
  bool keep_dac_read_search = false;
  // -o user=: serve as this user, with no capability at all.
  bool switch_user = false;
  std::string user;  // as -o user= gave it, for messages
  uid_t uid = 0;
  gid_t gid = 0;
  // What the daemon opens again by path once confined: a folder source
  // (listed and watched on every change) or a polled file. Each is opened
  // once the credentials are final, so a user= that may not read it fails
  // the mount instead of the first rebuild.
  std::vector<std::string> reopened;
};

// What a mount of `o` (its source canonical) that serves `tree` needs.
// `dynamic`: the source is rebuilt when it changes (folders, polled files).
Result<SandboxPlan> plan_sandbox(const MountOptions& o, const Tree& tree, bool dynamic);

// Confines this process. Call while no other thread runs (a sanitizer's
// own aside): capabilities and Landlock hold per thread, and every thread
// started later inherits them. Returns what was applied, for the log.
Result<std::string> apply_sandbox(const SandboxPlan& plan);

// The pieces, one file each.
Result<void> limit_bounding_set(bool dac_read_search);     // capabilities.cpp
Result<void> switch_user(uid_t uid, gid_t gid);            // capabilities.cpp
Result<void> keep_capabilities(bool dac_read_search);      // capabilities.cpp
// false: the kernel has no Landlock (or it is disabled); nothing applied.
Result<bool> restrict_paths(const std::vector<std::string>& read_beneath);  // landlock.cpp
Result<void> install_syscall_filter();                     // syscall_filter.cpp

// stfs --sandbox-test: applies `plan` in a child per attempt, tries what
// an attacker would, prints each result; 0 only if all were refused.
int run_sandbox_test(const SandboxPlan& plan, const std::string& source);

}  // namespace stfs
