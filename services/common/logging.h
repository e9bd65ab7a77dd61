// Minimal leveled logging to stderr: one line per call, with a UTC timestamp,
// the level and the process's name. Thread-safe. (Debian's Abseil has no
// absl/log.)
#ifndef LONGCTX_SERVICES_COMMON_LOGGING_H_
#define LONGCTX_SERVICES_COMMON_LOGGING_H_

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace longctx {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// ParseLogLevel accepts "debug", "info", "warning", "error".
bool ParseLogLevel(absl::string_view text, LogLevel* level);

// SetLogLevel drops messages below `level` from then on. Default: kInfo.
void SetLogLevel(LogLevel level);

// SetLogProcessName sets the name printed on every line (e.g. "gateway").
void SetLogProcessName(absl::string_view name);

// LogLine writes one line if `level` is enabled.
void LogLine(LogLevel level, absl::string_view message);

// Log formats with absl::StrFormat and writes one line.
template <typename... Args>
void Log(LogLevel level, const absl::FormatSpec<Args...>& format,
         const Args&... args) {
  LogLine(level, absl::StrFormat(format, args...));
}

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_LOGGING_H_
