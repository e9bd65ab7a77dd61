// Helpers for the end-to-end tests: send one Generate request to the gateway
// and read its stream to the end, keeping what the tests look at; call a
// worker rank directly (Generate, GetStatus).
#ifndef LONGCTX_TESTS_TESTING_GENERATE_H_
#define LONGCTX_TESTS_TESTING_GENERATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"

namespace longctx::testing {

// GenerateResult is one Generate stream, read to its end.
struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;             // Every token id, in order.
  std::vector<v1::TokenLogprob> logprobs;  // When asked for.
  std::string text;                        // The streamed text, joined.
  int messages = 0;                        // Stream messages read.
  v1::GenerateResponse last;  // The final message: usage, timings, reason.
  absl::Duration elapsed;     // From the call to its status.
};

// Generate sends `request` through `stub` with a deadline `deadline` from now
// and reads the stream to its end. `context`, when given, is the caller's (for
// metadata); its deadline is set here.
GenerateResult Generate(v1::LongContext::Stub& stub,
                        const v1::GenerateRequest& request,
                        absl::Duration deadline = absl::Seconds(120),
                        grpc::ClientContext* context = nullptr);

// Generate through a new plaintext channel to `address`.
GenerateResult Generate(const std::string& address,
                        const v1::GenerateRequest& request,
                        absl::Duration deadline = absl::Seconds(120));

// WorkerGenerate sends `request` straight to the worker rank at `address`
// (plaintext), reads the stream to its end and returns its status.
grpc::Status WorkerGenerate(const std::string& address,
                            const worker::v1::GenerateRequest& request,
                            absl::Duration deadline = absl::Seconds(60));

// WorkerStatus asks the worker rank at `address` (plaintext) for its status.
absl::StatusOr<worker::v1::WorkerStatus> WorkerStatus(
    const std::string& address, absl::Duration deadline = absl::Seconds(5));

}  // namespace longctx::testing

#endif  // LONGCTX_TESTS_TESTING_GENERATE_H_
