// LocalStack: the whole longctx stack on loopback for multi-process tests — a
// memory_store, worker ranks and a gateway on free ports, serving a tiny model
// made by tools/make_tiny_model. Every process is reaped when the stack is
// destroyed.
#ifndef LONGCTX_TESTS_TESTING_STACK_H_
#define LONGCTX_TESTS_TESTING_STACK_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "tests/testing/process.h"

namespace longctx::testing {

// Endpoint is a process's gRPC and metrics ports, and a gateway's internal
// port (Rendezvous).
struct Endpoint {
  int grpc_port = 0;
  int metrics_port = 0;
  int internal_port = 0;
  std::string address() const;           // "127.0.0.1:<grpc_port>"
  std::string internal_address() const;  // "127.0.0.1:<internal_port>"
};

// NewEndpoint picks three free ports.
Endpoint NewEndpoint();

// CommonFlags are the address and grace-period flags of a process at `e`.
std::vector<std::string> CommonFlags(const Endpoint& e);

// GatewayFlags are CommonFlags plus the gateway's --internal_listen_address.
std::vector<std::string> GatewayFlags(const Endpoint& e);

// MakeTinyModel writes the default tiny model (plus `extra_flags`) to `dir`.
absl::Status MakeTinyModel(const std::string& dir,
                           const std::vector<std::string>& extra_flags = {});

struct StackOptions {
  int num_workers = 1;  // Ranks in all, group after group.
  int group_size = 1;   // Ranks per group; divides num_workers.
  std::vector<std::string> store_flags;
  std::vector<std::string> worker_flags;
  std::vector<std::string> gateway_flags;
  std::vector<std::string> model_flags;  // For make_tiny_model.
  // Channels of Start's health checks: a stack started with TLS flags needs
  // TLS (and a client certificate for mutual TLS). Default: plaintext.
  ChannelSecurity security;
  // The gateway's, when its public port has another certificate than the
  // internal services. Default (nullopt): `security`.
  std::optional<ChannelSecurity> gateway_security;
};

class LocalStack {
 public:
  // Start makes the model and starts every process, then waits until each
  // answers SERVING (and the gateway sees a ready group).
  absl::Status Start(const StackOptions& options);

  // Stops every process. When the current test (or, in a suite's tear-down,
  // a test of the suite) failed, prints Logs() to stderr first, so a failure
  // in CI shows what the services said.
  ~LocalStack();

  const std::string& dir() const { return dir_; }
  const std::string& model_dir() const { return model_dir_; }
  const Endpoint& gateway() const { return gateway_ep_; }
  const Endpoint& store() const { return store_ep_; }
  const std::vector<Endpoint>& workers() const { return worker_eps_; }
  Process& gateway_process() { return processes_.back(); }
  Process& worker_process(int i) { return processes_[1 + i]; }
  Process& store_process() { return processes_[0]; }

  // RestartWorker starts worker rank `i` again (after it was killed) with the
  // same flags; its log goes to worker<i>.<n>.log.
  absl::Status RestartWorker(int i);

  // Logs of every process, for failure messages.
  std::string Logs() const;

 private:
  std::string dir_;
  std::string model_dir_;
  Endpoint store_ep_, gateway_ep_;
  std::vector<Endpoint> worker_eps_;
  std::vector<Process> processes_;  // store, workers..., gateway.
  std::vector<std::vector<std::string>> worker_argv_;
  int restarts_ = 0;
};

}  // namespace longctx::testing

#endif  // LONGCTX_TESTS_TESTING_STACK_H_
