// Test fixtures of a worker rank in the test process: the tiny model in a
// fresh folder, and worker options that serve it on loopback ports.
#ifndef LONGCTX_SERVICES_WORKER_TESTING_TINY_WORKER_H_
#define LONGCTX_SERVICES_WORKER_TESTING_TINY_WORKER_H_

#include <string>

#include "absl/strings/string_view.h"
#include "services/worker/worker_server.h"

namespace longctx::testing {

// NewTinyModelDir writes the "tiny" preset of tools/make_tiny_model into a
// new temporary folder whose name starts with `prefix`, and returns its path.
// Aborts, with the reason, if it cannot.
std::string NewTinyModelDir(absl::string_view prefix);

// TinyWorkerOptions serves `model_dir` on CPU: gRPC and /metrics on free
// loopback ports, blocks of 16 tokens, a 64 MiB KV cache not prefaulted, no
// memory store and no group.
WorkerServerOptions TinyWorkerOptions(const std::string& model_dir);

}  // namespace longctx::testing

#endif  // LONGCTX_SERVICES_WORKER_TESTING_TINY_WORKER_H_
