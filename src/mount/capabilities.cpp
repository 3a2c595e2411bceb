// Privileges: the uid switch and the capability sets. Raw capget/capset
// (no libcap): three small calls do not earn a dependency.
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stfs/mount/sandbox.hpp"

namespace stfs {
namespace {

Error sys_error(const char* what) {
  int e = errno;
  return Error{e, std::string(what) + ": " + std::strerror(e)};
}

}  // namespace

Result<void> switch_user(uid_t uid, gid_t gid) {
  // glibc applies set*id to every thread of the process.
  if (::setgroups(1, &gid) != 0) return unexpected(sys_error("cannot set groups"));
  if (::setresgid(gid, gid, gid) != 0) return unexpected(sys_error("cannot switch group"));
  if (::setresuid(uid, uid, uid) != 0) return unexpected(sys_error("cannot switch user"));
  return {};
}

Result<void> limit_bounding_set(bool dac_read_search) {
  // Needs CAP_SETPCAP, so it comes before the switch of user and capset:
  // no later exec could bring a capability back. Without CAP_SETPCAP (an
  // ordinary user) there is nothing to drop.
  for (int cap = 0; cap <= 63; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;  // past the last
    if (dac_read_search && cap == CAP_DAC_READ_SEARCH) continue;
    if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EPERM) {
      return unexpected(sys_error("cannot drop a capability from the bounding set"));
    }
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    return unexpected(sys_error("cannot clear the ambient capabilities"));
  }
  return {};
}

Result<void> keep_capabilities(bool dac_read_search) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return unexpected(sys_error("cannot read the capabilities"));
  }
  const bool had = data[0].permitted & (1u << CAP_DAC_READ_SEARCH);
  std::memset(data, 0, sizeof data);
  if (dac_read_search && had) {
    data[0].permitted = data[0].effective = 1u << CAP_DAC_READ_SEARCH;
  }
  if (::syscall(SYS_capset, &header, data) != 0) {
    return unexpected(sys_error("cannot drop capabilities"));
  }
  return {};
}

}  // namespace stfs
