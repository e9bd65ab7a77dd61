// LongctxClient: a C++ client of the public API (longctx.v1.LongContext).
#ifndef LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_
#define LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/longctx.grpc.pb.h"
#include "services/common/tls.h"

namespace longctx {

// LongctxClientOptions say where the gateway is and how to authenticate.
struct LongctxClientOptions {
  // The gateway's host:port.
  std::string address = "127.0.0.1:50051";
  // The channel's credentials (ChannelSecurity::FromOptions for TLS).
  // Default: plaintext.
  ChannelSecurity security;
  // Sent as "authorization: Bearer <token>" on every call when not empty (a
  // gateway with --auth_tokens_file refuses calls without one). Never logged.
  std::string token;
};

// LongctxClient talks to one gateway. Thread-safe: calls may run concurrently.
class LongctxClient {
 public:
  // A plaintext client of the gateway at `address` (host:port), no token.
  explicit LongctxClient(const std::string& address);
  explicit LongctxClient(const LongctxClientOptions& options);

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
  // Adds the token, if any, to a call.
  void Authorize(grpc::ClientContext* context) const;

  std::unique_ptr<v1::LongContext::Stub> stub_;
  const std::string token_;
};

}  // namespace longctx

#endif  // LONGCTX_TOOLS_CLIENTS_CPP_LONGCTX_CLIENT_H_
