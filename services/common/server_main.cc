#include "services/common/server_main.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "services/common/logging.h"

namespace longctx {

absl::StatusOr<ServerAddresses> ParseServerAddresses(
    absl::string_view listen_address, absl::string_view metrics_address) {
  ServerAddresses addresses;
  absl::StatusOr<HostPort> listen =
      ParseHostPort(listen_address, "listen_address");
  if (!listen.ok()) return listen.status();
  addresses.listen = *listen;
  absl::StatusOr<HostPort> metrics =
      ParseHostPort(metrics_address, "metrics_address");
  if (!metrics.ok()) return metrics.status();
  addresses.metrics = *metrics;
  return addresses;
}

int StartupError(absl::string_view program, const absl::Status& status) {
  std::fprintf(stderr, "%.*s: error: %.*s\n", static_cast<int>(program.size()),
               program.data(), static_cast<int>(status.message().size()),
               status.message().data());
  return 2;
}

absl::Status InitProcess(absl::string_view program,
                         absl::string_view log_level) {
  BlockShutdownSignals();
  // A client that disconnects must never kill the process.
  signal(SIGPIPE, SIG_IGN);
  SetLogProcessName(program);
  LogLevel level;
  if (!ParseLogLevel(log_level, &level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--log_level=", log_level,
                     " is not one of debug, info, warning, error"));
  }
  SetLogLevel(level);
  return absl::OkStatus();
}

absl::Status EnsureWritableDir(const std::string& dir,
                               absl::string_view flag_name) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag_name, " is empty"));
  }
  // mkdir -p, one component at a time.
  for (size_t pos = 1; pos <= dir.size(); ++pos) {
    if (pos != dir.size() && dir[pos] != '/') continue;
    std::string prefix = dir.substr(0, pos);
    if (mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--", flag_name, "=", dir,
          " cannot be created: ", std::strerror(errno), " (at ", prefix, ")"));
    }
  }
  struct stat info {};
  if (stat(dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("--", flag_name, "=", dir, " is not a directory"));
  }
  std::string probe = absl::StrCat(dir, "/.write-probe-", getpid());
  int fd = open(probe.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--", flag_name, "=", dir, " is not writable: ", std::strerror(errno)));
  }
  close(fd);
  unlink(probe.c_str());
  return absl::OkStatus();
}

int ServeUntilSignal(absl::string_view program, GrpcServer& server,
                     const MetricsServer& metrics, absl::Duration grace,
                     bool mark_serving, const DrainHooks& drain) {
  if (mark_serving) server.SetServing(true);
  Log(LogLevel::kInfo, "serving gRPC on port %d (%s)%s, /metrics on port %d",
      server.port(), server.security_summary(),
      server.health_port() != 0
          ? absl::StrCat(", plaintext health on port ", server.health_port())
          : "",
      metrics.port());
  int signal_number = WaitForShutdownSignal();
  Log(LogLevel::kInfo, "%s received: draining calls for up to %s",
      strsignal(signal_number), absl::FormatDuration(grace));
  const absl::Time deadline = absl::Now() + grace;
  if (drain.start) drain.start();
  server.SetServing(false);
  if (drain.idle) {
    while (!drain.idle() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(20));
    }
  }
  server.Shutdown(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  Log(LogLevel::kInfo, "%s stopped", std::string(program));
  return 0;
}

}  // namespace longctx
