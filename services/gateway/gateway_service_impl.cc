#include "services/gateway/gateway_service_impl.h"

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "kvblock/block_keys.h"
#include "services/common/logging.h"
#include "services/common/refused_reactors.h"
#include "services/common/status_util.h"
#include "services/gateway/generate_call.h"
#include "services/gateway/request_validator.h"

namespace longctx {
namespace {

// Buckets for requests over long prompts: from 10 ms to 20 minutes.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  return {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,   2.5, 5,
          10,   20,    40,   60,  120,  240, 480, 900, 1200};
}

// Answers a Generate call with an error and nothing else.
using ErrorReactor = RefusedWriteReactor<v1::GenerateResponse>;

}  // namespace

GatewayServiceImpl::GatewayServiceImpl(const GatewayModel* model,
                                       WorkerPool* pool,
                                       const GatewayLimits& limits,
                                       prometheus::Registry& registry,
                                       BearerAuth* auth,
                                       const GatewayRouting& routing)
    : model_(model),
      pool_(pool),
      auth_(auth),
      limits_(limits),
      routing_(routing),
      admission_(AdmissionLimits{limits.max_concurrent_requests,
                                 limits.max_concurrent_requests_per_tenant}),
      watchdog_(limits.stream_write_timeout),
      requests_(prometheus::BuildCounter()
                    .Name("longctx_requests_total")
                    .Help("Generate requests finished, by gRPC status code.")
                    .Register(registry)),
      unauthenticated_(
          prometheus::BuildCounter()
              .Name("longctx_unauthenticated_calls_total")
              .Help("Calls refused for a missing or invalid bearer token "
                    "(--auth_tokens_file), by method; nothing else was done.")
              .Register(registry)),
      prompt_tokens_(prometheus::BuildCounter()
                         .Name("longctx_prompt_tokens_total")
                         .Help("Prompt tokens of finished Generate requests.")
                         .Register(registry)
                         .Add({})),
      cached_tokens_(
          prometheus::BuildCounter()
              .Name("longctx_cached_prompt_tokens_total")
              .Help("Prompt tokens served from the KV cache or store.")
              .Register(registry)
              .Add({})),
      generated_tokens_(prometheus::BuildCounter()
                            .Name("longctx_generated_tokens_total")
                            .Help("Tokens generated.")
                            .Register(registry)
                            .Add({})),
      time_to_first_token_(
          prometheus::BuildHistogram()
              .Name("longctx_time_to_first_token_seconds")
              .Help("Time from a request's arrival to its first token.")
              .Register(registry)
              .Add({}, LatencyBuckets())),
      request_duration_(prometheus::BuildHistogram()
                            .Name("longctx_request_duration_seconds")
                            .Help("Time from a request's arrival to its end.")
                            .Register(registry)
                            .Add({}, LatencyBuckets())),
      affinity_requests_(
          prometheus::BuildCounter()
              .Name("longctx_prefix_affinity_requests_total")
              .Help("Requests sent to the worker group that was given the "
                    "longest known prefix of their prompt.")
              .Register(registry)
              .Add({})),
      stored_prefix_tokens_(
          prometheus::BuildCounter()
              .Name("longctx_stored_prefix_tokens_total")
              .Help("Prompt tokens of the longest prefix the memory store "
                    "held when requests were dispatched.")
              .Register(registry)
              .Add({})),
      retried_requests_(
          prometheus::BuildCounter()
              .Name("longctx_retried_requests_total")
              .Help("Requests retried on another worker group because theirs "
                    "failed before the first token.")
              .Register(registry)
              .Add({})),
      stalled_streams_(
          prometheus::BuildCounter()
              .Name("longctx_stalled_streams_total")
              .Help("Generate streams cancelled because their client took no "
                    "message for --stream_write_timeout.")
              .Register(registry)
              .Add({})) {}

absl::StatusOr<GatewayServiceImpl::Route> GatewayServiceImpl::Dispatch(
    ValidatedRequest& request) {
  Route route;
  worker::v1::GenerateRequest& worker_request = request.worker_request;
  const bool reads = request.cache_read;
  const bool writes = request.cache_write;
  std::vector<BlockKey> keys;
  int block_size = 0;
  if ((routing_.router != nullptr || routing_.store != nullptr) &&
      (reads || writes)) {
    if (std::optional<WorkerPool::BlockKeying> keying = pool_->block_keying()) {
      block_size = keying->block_size;
      const auto& prompt = worker_request.prompt_token_ids();
      keys = ChainedBlockKeys(
          BlockKeySeed(keying->fingerprint, worker_request.cache_namespace()),
          absl::MakeConstSpan(prompt.data(), prompt.size()), block_size);
    }
  }
  if (routing_.store != nullptr && reads && !keys.empty()) {
    std::vector<std::string> key_bytes;
    key_bytes.reserve(keys.size());
    for (const BlockKey& id : keys) key_bytes.push_back(id.key);
    // Shards that cannot answer in time read as misses.
    const std::vector<bool> stored = routing_.store->Contains(key_bytes);
    int run = 0;
    while (run < static_cast<int>(stored.size()) && stored[run]) ++run;
    route.stored_prefix_tokens = run * block_size;
    worker_request.set_stored_prefix_tokens(route.stored_prefix_tokens);
    stored_prefix_tokens_.Increment(route.stored_prefix_tokens);
  }
  PrefixRouter::Match match;
  if (routing_.router != nullptr && reads) match = routing_.router->Find(keys);
  absl::StatusOr<int> group = pool_->Acquire(match.group);
  if (!group.ok()) return group.status();
  route.group = *group;
  if (match.group >= 0 && match.group == *group) {
    route.prefix_blocks = match.blocks;
    affinity_requests_.Increment();
  }
  // The group caches the prompt's blocks only when the policy writes.
  if (routing_.router != nullptr && writes) {
    routing_.router->Remember(keys, *group);
  }
  return route;
}

absl::StatusOr<Tenant> GatewayServiceImpl::Authenticate(
    grpc::CallbackServerContext* context, absl::string_view method) {
  if (auth_ == nullptr) return Tenant();
  const auto& metadata = context->client_metadata();
  auto it = metadata.find("authorization");
  const bool present = it != metadata.end();
  absl::StatusOr<Tenant> tenant = auth_->Check(
      present, present ? absl::string_view(it->second.data(), it->second.size())
                       : absl::string_view());
  if (!tenant.ok()) {
    unauthenticated_.Add({{"method", std::string(method)}}).Increment();
    Log(LogLevel::kWarning, "refused %s from %s: %s", std::string(method),
        context->peer(), std::string(tenant.status().message()));
  }
  return tenant;
}

void GatewayServiceImpl::RecordDone(const std::string& request_id,
                                    const grpc::Status& status,
                                    const v1::Usage& usage,
                                    const v1::Timings& timings,
                                    const Route& route) {
  // One structured line per request; prompts and outputs are never logged.
  Log(status.ok() ? LogLevel::kInfo : LogLevel::kWarning,
      "request id=%s status=%s prompt_tokens=%d cached_tokens=%d "
      "new_tokens=%d ttft_s=%.3f total_s=%.3f group=%d affinity_blocks=%d "
      "stored_prefix_tokens=%d%s",
      request_id,
      absl::StatusCodeToString(
          static_cast<absl::StatusCode>(status.error_code())),
      usage.prompt_tokens(), usage.cached_tokens(), usage.generated_tokens(),
      timings.time_to_first_token_seconds(), timings.total_seconds(),
      route.group, route.prefix_blocks, route.stored_prefix_tokens,
      status.ok() ? ""
                  : absl::StrCat(" error=\"", status.error_message(), "\""));
  requests_
      .Add({{"code", absl::StatusCodeToString(
                         static_cast<absl::StatusCode>(status.error_code()))}})
      .Increment();
  prompt_tokens_.Increment(usage.prompt_tokens());
  cached_tokens_.Increment(usage.cached_tokens());
  generated_tokens_.Increment(usage.generated_tokens());
  if (usage.generated_tokens() > 0) {
    time_to_first_token_.Observe(timings.time_to_first_token_seconds());
  }
  request_duration_.Observe(timings.total_seconds());
}

grpc::ServerWriteReactor<v1::GenerateResponse>* GatewayServiceImpl::Generate(
    grpc::CallbackServerContext* context, const v1::GenerateRequest* request) {
  absl::StatusOr<Tenant> tenant = Authenticate(context, "Generate");
  if (!tenant.ok()) return new ErrorReactor(ToGrpcStatus(tenant.status()));
  const absl::Time arrived = absl::Now();
  const std::string request_id =
      request->request_id().empty()
          ? absl::StrCat("req-", next_request_.fetch_add(1))
          : request->request_id();
  auto fail = [&](const absl::Status& status) {
    RecordDone(request_id, ToGrpcStatus(status), v1::Usage(), v1::Timings(),
               Route());
    return new ErrorReactor(ToGrpcStatus(status));
  };
  if (draining_) {
    return fail(absl::UnavailableError(
        "the gateway is shutting down: send the request to another replica"));
  }
  // Admission: at most --max_concurrent_requests calls at once, and
  // --max_concurrent_requests_per_tenant of one tenant.
  absl::StatusOr<Admission::Slot> admitted = admission_.Admit(tenant->name);
  if (!admitted.ok()) return fail(admitted.status());
  auto slot = std::make_shared<Admission::Slot>(*std::move(admitted));
  auto fail_admitted = [&](const absl::Status& status) {
    slot->Release();
    return fail(status);
  };
  thread_local absl::BitGen random;
  absl::StatusOr<ValidatedRequest> validated = model_->PrepareRequest(
      *request, limits_, absl::Uniform<uint64_t>(random));
  if (!validated.ok()) return fail_admitted(validated.status());
  // Blocks are keyed, cached and stored within the tenant's namespace only.
  validated->worker_request.set_cache_namespace(tenant->cache_namespace);

  absl::StatusOr<Route> route = Dispatch(*validated);
  if (!route.ok()) return fail_admitted(route.status());
  validated->worker_request.set_request_id(request_id);
  // The route changes if the request is retried on another group (the
  // hooks run one at a time, under the call's lock).
  auto current = std::make_shared<Route>(*route);
  GenerateCallHooks hooks;
  hooks.on_done = [this, current, request_id, slot](
                      const grpc::Status& status, const v1::Usage& usage,
                      const v1::Timings& timings) {
    pool_->Release(current->group);
    slot->Release();
    RecordDone(request_id, status, usage, timings, *current);
  };
  hooks.retry_elsewhere =
      [this, current,
       request_id](const grpc::Status& status) -> worker::v1::Worker::Stub* {
    absl::StatusOr<int> next = pool_->Acquire(-1, current->group);
    if (!next.ok()) return nullptr;
    Log(LogLevel::kWarning,
        "request id=%s: group %d failed before the first token (%s: %s); "
        "retrying on group %d",
        request_id, current->group,
        absl::StatusCodeToString(
            static_cast<absl::StatusCode>(status.error_code())),
        status.error_message(), *next);
    pool_->Release(current->group);
    current->group = *next;
    current->prefix_blocks = 0;
    retried_requests_.Increment();
    return pool_->Leader(*next);
  };
  return StartGenerateCall(
      context, pool_->Leader(route->group), *std::move(validated), request_id,
      arrived, model_->NewTextStream(), std::move(hooks), &watchdog_,
      [this] { stalled_streams_.Increment(); });
}

grpc::ServerUnaryReactor* GatewayServiceImpl::Tokenize(
    grpc::CallbackServerContext* context, const v1::TokenizeRequest* request,
    v1::TokenizeResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Tenant> tenant = Authenticate(context, "Tokenize");
  if (!tenant.ok()) {
    reactor->Finish(ToGrpcStatus(tenant.status()));
    return reactor;
  }
  if (request->text().size() > static_cast<size_t>(limits_.max_text_bytes)) {
    reactor->Finish(ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
        "text has ", request->text().size(), " bytes; the limit is ",
        limits_.max_text_bytes, " (--max_text_bytes)"))));
    return reactor;
  }
  // Tokenizing a long text is work too: it holds a slot while it runs.
  absl::StatusOr<Admission::Slot> slot = admission_.Admit(tenant->name);
  if (!slot.ok()) {
    reactor->Finish(ToGrpcStatus(slot.status()));
    return reactor;
  }
  if (request->has_messages()) {
    absl::StatusOr<std::string> rendered =
        model_->RenderChat(request->messages(), limits_);
    if (!rendered.ok()) {
      reactor->Finish(ToGrpcStatus(rendered.status()));
      return reactor;
    }
    response->set_prompt_text(*std::move(rendered));
  }
  absl::StatusOr<std::vector<int32_t>> ids = model_->Encode(
      request->has_messages() ? response->prompt_text() : request->text());
  if (!ids.ok()) {
    reactor->Finish(ToGrpcStatus(ids.status()));
    return reactor;
  }
  if (request->add_bos() && model_->info().bos_token_id() >= 0) {
    response->add_token_ids(model_->info().bos_token_id());
  }
  for (int32_t id : *ids) response->add_token_ids(id);
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerUnaryReactor* GatewayServiceImpl::GetModelInfo(
    grpc::CallbackServerContext* context,
    const v1::GetModelInfoRequest* /*request*/, v1::ModelInfo* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  absl::StatusOr<Tenant> tenant = Authenticate(context, "GetModelInfo");
  if (!tenant.ok()) {
    reactor->Finish(ToGrpcStatus(tenant.status()));
    return reactor;
  }
  *response = model_->info();
  response->set_max_prompt_tokens(limits_.max_prompt_tokens);
  response->set_max_new_tokens(limits_.max_new_tokens);
  response->set_num_groups(pool_->num_groups());
  response->set_group_size(pool_->group_size());
  response->set_fingerprint(pool_->fingerprint());
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace longctx
