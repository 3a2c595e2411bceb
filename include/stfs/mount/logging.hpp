// Logging setup: spdlog to stderr in the foreground (journald collects it
// under systemd), to syslog once daemonised. Per-request messages are
// debug level only, so a hostile reader cannot flood the log.
#pragma once

#include <memory>

namespace spdlog {
class logger;
}

namespace stfs {

enum class LogTarget { kStderr, kSyslog };

// Installs the default logger; `verbose` enables info, `debug` everything.
void init_logging(LogTarget target, bool verbose, bool debug);

// The same logger, not installed: a syslog one connects to /dev/log now,
// so that it can be installed after the sandbox, which refuses new sockets.
std::shared_ptr<spdlog::logger> make_logger(LogTarget target, bool verbose, bool debug);

}  // namespace stfs
