#include "stfs/mount/logging.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

namespace stfs {

std::shared_ptr<spdlog::logger> make_logger(LogTarget target, bool verbose, bool debug) {
  std::shared_ptr<spdlog::logger> logger;
  if (target == LogTarget::kSyslog) {
    logger = std::make_shared<spdlog::logger>(
        "stfs",
        std::make_shared<spdlog::sinks::syslog_sink_mt>("stfs", LOG_PID | LOG_NDELAY, LOG_DAEMON,
                                                       false));
    logger->set_pattern("%v");
  } else {
    logger =
        std::make_shared<spdlog::logger>("stfs", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("stfs: %l: %v");
  }
  logger->set_level(debug     ? spdlog::level::debug
                    : verbose ? spdlog::level::info
                              : spdlog::level::warn);
  logger->flush_on(spdlog::level::debug);
  return logger;
}

void init_logging(LogTarget target, bool verbose, bool debug) {
  spdlog::set_default_logger(make_logger(target, verbose, debug));
}

}  // namespace stfs
