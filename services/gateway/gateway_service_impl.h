// GatewayServiceImpl: the public API longctx.v1.LongContext
// (proto/longctx.proto).
#ifndef LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVICE_IMPL_H_
#define LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVICE_IMPL_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "memory_store/store_client.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "proto/longctx.grpc.pb.h"
#include "services/gateway/admission.h"
#include "services/gateway/bearer_auth.h"
#include "services/gateway/gateway_limits.h"
#include "services/gateway/gateway_model.h"
#include "services/gateway/prefix_router.h"
#include "services/gateway/stream_watchdog.h"
#include "services/gateway/worker_pool.h"

namespace longctx {

// GatewayRouting is how the gateway places prompts by their prefix. Both
// parts are optional (null) and not owned.
struct GatewayRouting {
  // Remembers which group computed which prefix; requests go to that group
  // when it has room.
  PrefixRouter* router = nullptr;
  // The memory store, asked before dispatch how long a prefix of the prompt
  // it holds (passed to the worker as a hint, logged and counted).
  StoreClient* store = nullptr;
};

// GatewayServiceImpl serves the public API. Thread-safe.
class GatewayServiceImpl final : public v1::LongContext::CallbackService {
 public:
  // `model`, `pool` and `auth` are not owned and must outlive the service,
  // as must what `routing` points to. With `auth` every call must carry a
  // valid bearer token, checked before anything else is done
  // (UNAUTHENTICATED otherwise); null lets every call in.
  GatewayServiceImpl(const GatewayModel* model, WorkerPool* pool,
                     const GatewayLimits& limits,
                     prometheus::Registry& registry, BearerAuth* auth = nullptr,
                     const GatewayRouting& routing = GatewayRouting());

  grpc::ServerWriteReactor<v1::GenerateResponse>* Generate(
      grpc::CallbackServerContext* context,
      const v1::GenerateRequest* request) override;
  grpc::ServerUnaryReactor* Tokenize(grpc::CallbackServerContext* context,
                                     const v1::TokenizeRequest* request,
                                     v1::TokenizeResponse* response) override;
  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest* request,
                                         v1::ModelInfo* response) override;

  // StartDraining makes Generate refuse new requests with UNAVAILABLE (the
  // process is shutting down); requests in flight go on.
  void StartDraining() { draining_ = true; }

  // Generate streams and Tokenize calls admitted and not yet done.
  int in_flight() const { return admission_.in_flight(); }

 private:
  // Authenticate checks the call's bearer token (when there is `auth_`) and
  // returns its tenant (Tenant() without `auth_`: one namespace for all). A
  // refused call is counted and logged with its method and peer, never its
  // credentials.
  absl::StatusOr<Tenant> Authenticate(grpc::CallbackServerContext* context,
                                      absl::string_view method);

  // Where a request went, and why.
  struct Route {
    int group = -1;
    int prefix_blocks = 0;  // Leading blocks the group was given before.
    int stored_prefix_tokens = 0;
  };

  // Picks the group for the request's prompt and counts a request on it
  // (WorkerPool::Acquire); fills the worker request's stored-prefix hint.
  absl::StatusOr<Route> Dispatch(ValidatedRequest& request);

  // Counts a finished request in the metrics and logs its one line.
  void RecordDone(const std::string& request_id, const grpc::Status& status,
                  const v1::Usage& usage, const v1::Timings& timings,
                  const Route& route);

  const GatewayModel* const model_;
  WorkerPool* const pool_;
  BearerAuth* const auth_;
  const GatewayLimits limits_;
  const GatewayRouting routing_;
  std::atomic<uint64_t> next_request_{1};
  Admission admission_;
  StreamWatchdog watchdog_;
  std::atomic<bool> draining_{false};

  prometheus::Family<prometheus::Counter>& requests_;
  prometheus::Family<prometheus::Counter>& unauthenticated_;
  prometheus::Counter& prompt_tokens_;
  prometheus::Counter& cached_tokens_;
  prometheus::Counter& generated_tokens_;
  prometheus::Histogram& time_to_first_token_;
  prometheus::Histogram& request_duration_;
  prometheus::Counter& affinity_requests_;
  prometheus::Counter& stored_prefix_tokens_;
  prometheus::Counter& retried_requests_;
  prometheus::Counter& stalled_streams_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GATEWAY_SERVICE_IMPL_H_
