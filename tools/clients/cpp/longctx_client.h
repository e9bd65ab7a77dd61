// LongctxClient: a C++ client of the public API (longctx.v1.LongContext).
#ifndef LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_
#define LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/longctx.grpc.pb.h"

namespace longctx {

// LongctxClient talks to one gateway. Thread-safe: calls may run concurrently.
class LongctxClient {
 public:
  // `address` is the gateway's host:port (plaintext gRPC).
  explicit LongctxClient(const std::string& address);

  // Generate streams a request: `on_message` sees every message as it arrives
  // (new tokens and text; the last one has usage, finish reason and timings).
  // Returns the last message, or the call's status mapped to absl::Status.
  absl::StatusOr<v1::GenerateResponse> Generate(
      const v1::GenerateRequest& request, absl::Duration deadline,
      const std::function<void(const v1::GenerateResponse&)>& on_message);

  absl::StatusOr<v1::TokenizeResponse> Tokenize(
      const v1::TokenizeRequest& request);
  absl::StatusOr<v1::ModelInfo> GetModelInfo();

 private:
  std::unique_ptr<v1::LongContext::Stub> stub_;
};

}  // namespace longctx

#endif  // LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_
