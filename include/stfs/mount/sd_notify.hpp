// systemd's readiness protocol without libsystemd: one AF_UNIX SOCK_DGRAM
// datagram to $NOTIFY_SOCKET per message ("READY=1\nSTATUS=..."). A socket
// name starting with '@' is in the abstract namespace.
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

namespace stfs {

// Sends `state` if $NOTIFY_SOCKET is set; returns false if it is unset or
// the send failed. Never throws.
bool sd_notify(std::string_view state);

// Connects one socket to $NOTIFY_SOCKET now, for every later sd_notify:
// the sandbox refuses new sockets.
void sd_notify_connect();

// The watchdog interval systemd asked for ($WATCHDOG_USEC, for this
// process per $WATCHDOG_PID), if any.
std::optional<std::chrono::microseconds> sd_watchdog_interval();

}  // namespace stfs
