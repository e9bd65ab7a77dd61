// Helpers for tests that start longctx processes: free ports, a child process
// handle that is always reaped, waiting for gRPC health, listing services by
// reflection, fetching /metrics, and running a command with input.
#ifndef LONGCTX_TESTS_TESTING_PROCESS_H_
#define LONGCTX_TESTS_TESTING_PROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "services/common/tls.h"

namespace longctx::testing {

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// RunfilePath returns the path of a file of this workspace in the test's
// runfiles, e.g. RunfilePath("services/gateway/gateway").
std::string RunfilePath(const std::string& workspace_relative);

// Process is a child process. The destructor kills (SIGKILL) and reaps it if it
// is still running, so a failing test never leaves processes behind.
class Process {
 public:
  Process() = default;
  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  // Start runs argv[0] with arguments, stdout and stderr appended to
  // `log_path`.
  static absl::StatusOr<Process> Start(const std::vector<std::string>& argv,
                                       const std::string& log_path);

  // Signal sends `signal_number` to the process.
  void Signal(int signal_number);

  // Wait waits up to `timeout` for the process to exit and returns its exit
  // code (128 + signal if killed by a signal). DEADLINE_EXCEEDED if it is still
  // running.
  absl::StatusOr<int> Wait(absl::Duration timeout);

  // Running says whether the process has not exited yet.
  bool Running();

  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }

  // Log returns what the process has written so far.
  std::string Log() const;

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
  std::string log_path_;
};

// WaitForHealth polls grpc.health.v1 Check on `address` (through channels of
// `security`: plaintext by default) until it answers `want` ("SERVING",
// "NOT_SERVING") or `timeout` passes (DEADLINE_EXCEEDED with the last answer
// in the message).
absl::Status WaitForHealth(const std::string& address, absl::string_view want,
                           absl::Duration timeout,
                           const ChannelSecurity& security = ChannelSecurity());

// WaitForServing is WaitForHealth(address, "SERVING", ...).
absl::Status WaitForServing(
    const std::string& address, absl::Duration timeout,
    const ChannelSecurity& security = ChannelSecurity());

// HealthStatus returns the name of the health status `address` reports
// ("SERVING", "NOT_SERVING", …) for `service` ("" for the whole server).
absl::StatusOr<std::string> HealthStatus(
    const std::string& address, const std::string& service,
    const ChannelSecurity& security = ChannelSecurity());

// ListServices asks the server's reflection service for its services' full
// names.
absl::StatusOr<std::vector<std::string>> ListServices(
    const std::string& address);

// HttpGet fetches http://127.0.0.1:port/path and returns the body (HTTP 200
// only).
absl::StatusOr<std::string> HttpGet(int port, const std::string& path);

// MetricSum is the sum of every sample of metric `name` (any labels) on a
// Prometheus /metrics page; 0 when it has none.
double MetricSum(absl::string_view page, absl::string_view name);

// RunCommand runs argv with `input` on stdin; returns its exit code and fills
// *output with stdout and stderr together.
absl::StatusOr<int> RunCommand(const std::vector<std::string>& argv,
                               const std::string& input, std::string* output);

}  // namespace longctx::testing

#endif  // LONGCTX_TESTS_TESTING_PROCESS_H_
