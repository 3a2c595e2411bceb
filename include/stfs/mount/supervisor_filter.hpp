// The supervisor's confinement (supervisor.hpp).
//
// Its seccomp filter is inherited by every daemon it starts, across exec,
// before that daemon has opened its source or loaded its libraries; so it
// cannot be the daemon's allow-list. It kills the calls that neither the
// supervisor nor a starting daemon ever makes: tracing and reading other
// processes, new mounts and namespaces, modules, bpf, kexec, keys, file
// handles, network sockets. Each daemon then confines itself as before,
// and filters stack. As root, the capabilities it keeps (bounding and
// permitted) are those of unmounting (CAP_SYS_ADMIN) and of the daemons it
// starts (reading sources: CAP_DAC_READ_SEARCH, CAP_DAC_OVERRIDE; -o user=:
// CAP_SETUID, CAP_SETGID; dropping the rest: CAP_SETPCAP), with
// no_new_privs. An ordinary user's supervisor keeps no capability and
// unmounts through fusermount3, which is setuid: no_new_privs would stop
// it, and without it the kernel loads no filter for a user.
#pragma once

#include <string>

#include "stfs/base/result.hpp"

namespace stfs {

// Confines the calling process; returns what it did, for the log.
Result<std::string> confine_supervisor();

}  // namespace stfs
