#include "services/common/logging.h"

#include <atomic>
#include <cstdio>
#include <string>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace longctx {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
absl::Mutex g_mu;
std::string* g_name ABSL_GUARDED_BY(g_mu) = new std::string("longctx");

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARN";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

}  // namespace

bool ParseLogLevel(absl::string_view text, LogLevel* level) {
  if (text == "debug") {
    *level = LogLevel::kDebug;
  } else if (text == "info") {
    *level = LogLevel::kInfo;
  } else if (text == "warning") {
    *level = LogLevel::kWarning;
  } else if (text == "error") {
    *level = LogLevel::kError;
  } else {
    return false;
  }
  return true;
}

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }

void SetLogProcessName(absl::string_view name) {
  absl::MutexLock lock(&g_mu);
  *g_name = std::string(name);
}

void LogLine(LogLevel level, absl::string_view message) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  std::string time = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                      absl::UTCTimeZone());
  absl::MutexLock lock(&g_mu);
  std::fprintf(stderr, "%s %s %s: %.*s\n", time.c_str(), LevelName(level),
               g_name->c_str(), static_cast<int>(message.size()),
               message.data());
  std::fflush(stderr);
}

}  // namespace longctx
