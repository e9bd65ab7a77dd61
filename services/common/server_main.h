// What the three binaries' main() functions share: parsing the address flags,
// one clear line on a startup error, and serving until SIGTERM/SIGINT with a
// graceful shutdown. Flags themselves are defined in each main.cc.
#ifndef LONGCTX_SERVICES_COMMON_SERVER_MAIN_H_
#define LONGCTX_SERVICES_COMMON_SERVER_MAIN_H_

#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/common/grpc_server.h"
#include "services/common/metrics_server.h"
#include "services/common/net_address.h"

namespace longctx {

// ServerAddresses are the --listen_address and --metrics_address of a process.
struct ServerAddresses {
  HostPort listen;
  HostPort metrics;
};

// ParseServerAddresses parses both flags' values; errors name the flag.
absl::StatusOr<ServerAddresses> ParseServerAddresses(
    absl::string_view listen_address, absl::string_view metrics_address);

// StartupError prints "<program>: error: <message>" as one line on stderr and
// returns the exit code for a configuration error (2).
int StartupError(absl::string_view program, const absl::Status& status);

// InitProcess blocks the shutdown signals (before any thread starts), names the
// log lines after `program` and applies --log_level's value. Returns
// INVALID_ARGUMENT for an unknown level.
absl::Status InitProcess(absl::string_view program,
                         absl::string_view log_level);

// EnsureWritableDir creates `dir` (and its parents) if missing and checks that
// a file can be created in it. Errors name `flag_name` and the reason.
absl::Status EnsureWritableDir(const std::string& dir,
                               absl::string_view flag_name);

// DrainHooks let a service drain its own calls on SIGTERM while the server
// still accepts connections: `start` makes it refuse new work (with
// UNAVAILABLE, which clients retry elsewhere, rather than the CANCELLED gRPC
// gives a call that races the server's shutdown), and the server waits until
// `idle` returns true or the grace period ends before it stops.
struct DrainHooks {
  std::function<void()> start;
  std::function<bool()> idle;
};

// ServeUntilSignal marks `server` SERVING (unless `mark_serving` is false: the
// caller manages health itself), logs where the process listens, blocks until
// SIGTERM or SIGINT, then drains: `drain.start`, NOT_SERVING, waits for
// `drain.idle` within `grace`, and shuts the server down with what is left of
// `grace` for calls in flight (cancelled at its end). Returns the process's
// exit code (0).
int ServeUntilSignal(absl::string_view program, GrpcServer& server,
                     const MetricsServer& metrics, absl::Duration grace,
                     bool mark_serving = true,
                     const DrainHooks& drain = DrainHooks());

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_SERVER_MAIN_H_
