// How a session reads requests from /dev/fuse and writes replies, in the
// shape of libfuse's custom io (fuse_adapter.cpp binds them): the reads
// go through the poller (device_poll.hpp); INIT passes by InitReply on its
// way in and out, and by the supervisor's link on its way in. A takeover's
// INIT comes from ResumeInit, its reply goes nowhere, and then the kernel
// resends what was in flight. No libfuse here: the unit tests drive these
// on a socket standing in for the device.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>

namespace stfs {

// `userdata` is the session's SessionState.
ssize_t device_read(int fd, void* buf, std::size_t len, void* userdata);
ssize_t device_writev(int fd, iovec* iov, int count, void* userdata);
ssize_t device_splice(int in, off_t* in_off, int out, off_t* out_off, std::size_t len,
                      unsigned flags, void* userdata);

}  // namespace stfs
