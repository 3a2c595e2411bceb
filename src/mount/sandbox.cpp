#include "stfs/mount/sandbox.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <set>

#include <spdlog/spdlog.h>

#include "stfs/base/paths.hpp"
#include "stfs/base/unique_fd.hpp"
#include "stfs/mount/options.hpp"
#include "stfs/namespace/tree.hpp"

namespace stfs {
namespace {

// The file an open descriptor names now, links resolved.
std::string real_path_of(int fd) {
  char buf[PATH_MAX];
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(proc.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string();
}

// Keeps the outermost of nested paths, once each.
std::vector<std::string> outermost(std::vector<std::string> paths) {
  std::sort(paths.begin(), paths.end());
  std::vector<std::string> out;
  for (std::string& p : paths) {
    if (out.empty() || !path_within(p, out.back())) out.push_back(std::move(p));
  }
  return out;
}

Result<void> resolve_user(const std::string& name, SandboxPlan& plan) {
  passwd pw{};
  passwd* found = nullptr;
  char buf[4096];
  char* end = nullptr;
  const unsigned long id = std::strtoul(name.c_str(), &end, 10);
  int rc = *end == '\0' ? ::getpwuid_r(static_cast<uid_t>(id), &pw, buf, sizeof buf, &found)
                        : ::getpwnam_r(name.c_str(), &pw, buf, sizeof buf, &found);
  if (rc != 0 || !found) {
    if (*end != '\0') return unexpected(Error{EINVAL, "user=" + name + ": no such user"});
    plan.uid = static_cast<uid_t>(id);  // a bare uid need not have an entry
    plan.gid = static_cast<gid_t>(id);
  } else {
    plan.uid = pw.pw_uid;
    plan.gid = pw.pw_gid;
  }
  plan.switch_user = true;
  plan.user = name;
  return {};
}

}  // namespace

Result<SandboxPlan> plan_sandbox(const MountOptions& o, const Tree& tree, bool dynamic) {
  SandboxPlan plan;
  plan.enabled = o.sandbox;
  if (!o.run_as.empty()) {
    if (auto r = resolve_user(o.run_as, plan); !r) return unexpected(r.error());
    if (::geteuid() != 0 && plan.uid != ::geteuid()) {
      return unexpected(Error{EPERM, "user=" + o.run_as + ": only root can serve as another user"});
    }
  }
  struct stat src {};
  const bool folder = ::stat(o.source.c_str(), &src) == 0 && S_ISDIR(src.st_mode);
  std::vector<std::string> paths;
  bool others_own = false;
  // Whether root, without CAP_DAC_READ_SEARCH, might be refused a folder on
  // the way to `path`: one that another user owns (a 0700 home).
  std::set<std::string> seen;
  auto check_folders = [&](std::string dir) {
    while (!others_own && seen.insert(dir).second) {
      struct stat d {};
      if (::stat(dir.c_str(), &d) == 0 && d.st_uid != ::geteuid()) others_own = true;
      if (dir == "/") break;
      dir = parent_of(dir);
    }
  };
  check_folders(folder ? o.source : parent_of(o.source));
  if (folder) {
    paths.push_back(o.source);
    // The folders that followed links to models resolve into (a Hugging
    // Face snapshot links to ../../blobs), as opened now; for any other
    // file outside (a config.json linked from elsewhere), that file only:
    // a link to /etc/x must not open /etc.
    for (std::uint32_t i = 0; i < tree.model_count(); ++i) {
      const Model& m = tree.model(i);
      struct stat st {};
      if (::fstat(m.fd(), &st) == 0 && st.st_uid != ::geteuid()) others_own = true;
      const std::string real = real_path_of(m.fd());
      if (!real.empty() && real.front() == '/') check_folders(parent_of(real));
      if (!real.empty() && real.front() == '/' && !path_within(real, o.source)) {
        paths.push_back(m.is_safetensors() ? parent_of(real) : real);
      }
    }
  } else if (dynamic) {
    // A polled file is reopened by its path, and may be replaced by a
    // rename: its folder, and the folder of the link it was given through.
    paths.push_back(parent_of(o.source));
    if (!o.source_as_given.empty()) paths.push_back(parent_of(o.source_as_given));
  }
  // A rebuild opens the source again by the path it was given.
  if (folder || dynamic) {
    plan.reopened.push_back(o.source_as_given.empty() ? o.source : o.source_as_given);
  }
  for (const std::string& d : o.sandbox_read) paths.push_back(d);
  plan.read_beneath = outermost(std::move(paths));
  plan.keep_dac_read_search = dynamic && !plan.switch_user && ::geteuid() == 0 && others_own;
  return plan;
}

namespace {

// Opens each path the daemon opens again later, with the credentials it
// has now.
Result<void> check_reopened(const SandboxPlan& plan) {
  for (const std::string& path : plan.reopened) {
    const UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      const int e = errno;
      const std::string who = plan.switch_user ? "user=" + plan.user : "the daemon";
      return unexpected(Error{e, who + " cannot read " + path + ": " + std::strerror(e) +
                                     " (it is read again whenever it changes)"});
    }
  }
  return {};
}

}  // namespace

Result<std::string> apply_sandbox(const SandboxPlan& plan) {
  if (!plan.enabled) {
    // -o user= was asked for by name: it holds without the rest.
    if (!plan.switch_user) return std::string("sandbox off (-o sandbox=off)");
    if (auto r = switch_user(plan.uid, plan.gid); !r) return unexpected(r.error());
    if (auto r = check_reopened(plan); !r) return unexpected(r.error());
    return "sandbox off (-o sandbox=off); serving as uid " + std::to_string(plan.uid);
  }
  ::tzset();  // syslog's timestamps: read the zone file while we still can
  std::string done;
  if (auto r = limit_bounding_set(plan.keep_dac_read_search); !r) return unexpected(r.error());
  if (plan.switch_user) {
    if (auto r = switch_user(plan.uid, plan.gid); !r) return unexpected(r.error());
    done += "uid " + std::to_string(plan.uid) + ", ";
  }
  if (auto r = keep_capabilities(plan.keep_dac_read_search); !r) return unexpected(r.error());
  done += plan.keep_dac_read_search ? "capabilities: dac_read_search only, " : "no capabilities, ";
  if (auto r = check_reopened(plan); !r) return unexpected(r.error());
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    int e = errno;
    return unexpected(Error{e, std::string("cannot set no_new_privs: ") + std::strerror(e)});
  }
  done += "no_new_privs, ";
  auto landlock = restrict_paths(plan.read_beneath);
  if (!landlock) return unexpected(landlock.error());
  if (!*landlock) {
    spdlog::warn("Landlock is not available here (kernel without it, or a container's seccomp "
                 "filter refuses it): the daemon's reads are not confined to its source; the "
                 "rest of the sandbox applies");
    done += "no Landlock, ";
  } else if (plan.read_beneath.empty()) {
    done += "Landlock: no file may be opened, ";
  } else {
    done += "Landlock: reads only beneath";
    for (const std::string& p : plan.read_beneath) done += " " + p;
    done += ", ";
  }
  if (auto r = install_syscall_filter(); !r) return unexpected(r.error());
  done += "seccomp allow-list";
  return done;
}

}  // namespace stfs
