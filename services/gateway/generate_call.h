// GenerateCall: one public Generate stream at the gateway, relayed to a worker
// group's leader. Tokens are detokenized as they arrive, stop sequences are
// matched on the text, and the final message carries usage, finish reason and
// timings. Cancellation travels both ways: a client that goes away cancels the
// worker call, a stop sequence ends the worker call early. A group that breaks
// before the first token is replaced by another, once.
#ifndef LONGCTX_SERVICES_GATEWAY_GENERATE_CALL_H_
#define LONGCTX_SERVICES_GATEWAY_GENERATE_CALL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/types/span.h"
#include "proto/longctx.pb.h"
#include "proto/worker.grpc.pb.h"
#include "services/gateway/request_validator.h"
#include "services/gateway/stream_watchdog.h"
#include "services/gateway/text_stream.h"

namespace longctx {

// GenerateCallHooks are called once per request when it ends.
struct GenerateCallHooks {
  // Called with the final gRPC status code, usage and timings.
  std::function<void(const grpc::Status&, const v1::Usage&, const v1::Timings&)>
      on_done;
  // Called (at most once) when the worker call failed as a broken or
  // vanished group does (UNAVAILABLE, ABORTED, INTERNAL, UNKNOWN: `status`)
  // before any token reached the client: returns the leader of another group
  // to try once more, or null to fail the request with `status`. May be
  // empty: no retry.
  std::function<worker::v1::Worker::Stub*(const grpc::Status& status)>
      retry_elsewhere;
};

// StartGenerateCall starts relaying `request` (validated, prompt tokenized) to
// `leader` and returns the server reactor that streams to the client. The
// reactor deletes itself when done. `leader` must outlive it, and so must
// `watchdog` (may be null: no write timeout), which cancels the stream when a
// write to the client stalls; `on_stalled` (may be empty) is called then.
grpc::ServerWriteReactor<v1::GenerateResponse>* StartGenerateCall(
    grpc::CallbackServerContext* context, worker::v1::Worker::Stub* leader,
    ValidatedRequest request, std::string request_id, absl::Time arrived,
    std::unique_ptr<TextStream> text, GenerateCallHooks hooks,
    StreamWatchdog* watchdog = nullptr,
    std::function<void()> on_stalled = nullptr);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GENERATE_CALL_H_
