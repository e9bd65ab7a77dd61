// The rules of a request to a worker group, shared by the gateway and the
// workers. The gateway builds worker requests from public ones and checks
// their fields with these functions (services/gateway/request_validator.h);
// every worker checks each request it receives again with CheckWorkerRequest
// before the request reaches its engine, so nothing sent to a worker directly
// — ids outside the vocabulary, a huge max_new_tokens, NaN sampling
// parameters — can fail the other sequences of a batch or break its group.
#ifndef LONGCTX_SERVICES_COMMON_REQUEST_RULES_H_
#define LONGCTX_SERVICES_COMMON_REQUEST_RULES_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/longctx.pb.h"
#include "proto/worker.pb.h"

namespace longctx {

// Fixed protocol limits (not flags: they bound work per request, not
// capacity).
inline constexpr int kMaxRequestIdChars = 128;
inline constexpr int kMaxStopSequences = 16;
inline constexpr int kMaxStopSequenceBytes = 256;
inline constexpr int kMaxStopTokenIds = 64;
inline constexpr int kMaxTopLogprobs = 20;
// End-of-sequence ids a model may declare; the gateway adds them to a
// worker request's stop ids.
inline constexpr int kMaxEosTokenIds = 16;

// CheckPromptTokens checks a prompt: INVALID_ARGUMENT if it is empty or an id
// is outside [0, vocab_size) (naming `field` and the index),
// RESOURCE_EXHAUSTED naming `limit_name` if it has more than max_tokens.
absl::Status CheckPromptTokens(absl::Span<const int32_t> ids, int vocab_size,
                               int max_tokens, absl::string_view field,
                               absl::string_view limit_name);

// CheckSampling checks resolved sampling parameters: temperature finite and
// >= 0, top_p in (0, 1], top_k >= 0. INVALID_ARGUMENT naming the field.
absl::Status CheckSampling(float temperature, float top_p, int top_k);

// CheckStopTokenIds checks stop ids: at most max_ids, each in the vocabulary.
absl::Status CheckStopTokenIds(
    const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size,
    int max_ids, absl::string_view field);

// CheckLogprobs checks log-probability options: top_logprobs in [0,
// kMaxTopLogprobs], and only with enabled.
absl::Status CheckLogprobs(const v1::LogprobsOptions& logprobs);

// WorkerRequestLimits are what a worker accepts: its model's vocabulary and
// the tokens its KV cache can hold (prompt and new tokens together are
// checked by the engine against the free blocks).
struct WorkerRequestLimits {
  int vocab_size = 0;
  int max_prompt_tokens = 0;
  int max_new_tokens = 0;
  // The flag that bounds the two, as errors name it.
  std::string limit_name = "--kv_cache_bytes";
};

// CheckWorkerRequest checks every field of a worker request. Errors are
// INVALID_ARGUMENT naming the field, its value and the rule, or
// RESOURCE_EXHAUSTED for a prompt or max_new_tokens over `limits`.
absl::Status CheckWorkerRequest(const worker::v1::GenerateRequest& request,
                                const WorkerRequestLimits& limits);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_REQUEST_RULES_H_
