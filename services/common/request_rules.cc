#include "services/common/request_rules.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "kvblock/block_keys.h"

namespace longctx {
namespace {

// INVALID_ARGUMENT naming `field` and the index of the first id outside
// [0, vocab_size).
absl::Status CheckInVocabulary(absl::Span<const int32_t> ids, int vocab_size,
                               absl::string_view field) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "] is ", ids[i],
                       ", outside the vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckPromptTokens(absl::Span<const int32_t> ids, int vocab_size,
                               int max_tokens, absl::string_view field,
                               absl::string_view limit_name) {
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt is empty: ", field, " has no tokens"));
  }
  if (ids.size() > static_cast<size_t>(max_tokens)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("prompt has ", ids.size(), " tokens; the limit is ",
                     max_tokens, " (", limit_name, ")"));
  }
  return CheckInVocabulary(ids, vocab_size, field);
}

absl::Status CheckSampling(float temperature, float top_p, int top_k) {
  if (!std::isfinite(temperature) || temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.temperature is ", temperature,
                     "; it must be >= 0 (0 is greedy)"));
  }
  if (!(top_p > 0 && top_p <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("sampling.top_p is ", top_p, "; it must be in (0, 1]"));
  }
  if (top_k < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sampling.top_k is ", top_k, "; it must be >= 0 (0 keeps all tokens)"));
  }
  return absl::OkStatus();
}

absl::Status CheckStopTokenIds(
    const google::protobuf::RepeatedField<int32_t>& ids, int vocab_size,
    int max_ids, absl::string_view field) {
  if (ids.size() > max_ids) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, " has ", ids.size(), " entries; the limit is ", max_ids));
  }
  return CheckInVocabulary(absl::MakeConstSpan(ids.data(), ids.size()),
                           vocab_size, field);
}

absl::Status CheckLogprobs(const v1::LogprobsOptions& logprobs) {
  if (logprobs.top_logprobs() < 0 ||
      logprobs.top_logprobs() > kMaxTopLogprobs) {
    return absl::InvalidArgumentError(
        absl::StrCat("logprobs.top_logprobs is ", logprobs.top_logprobs(),
                     "; it must be in [0, ", kMaxTopLogprobs, "]"));
  }
  if (logprobs.top_logprobs() > 0 && !logprobs.enabled()) {
    return absl::InvalidArgumentError(
        "logprobs.top_logprobs is set but logprobs.enabled is false");
  }
  return absl::OkStatus();
}

absl::Status CheckWorkerRequest(const worker::v1::GenerateRequest& request,
                                const WorkerRequestLimits& limits) {
  if (request.request_id().size() > kMaxRequestIdChars) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id has ", request.request_id().size(),
                     " characters; the limit is ", kMaxRequestIdChars));
  }
  absl::Status status = CheckPromptTokens(
      request.prompt_token_ids(), limits.vocab_size, limits.max_prompt_tokens,
      "prompt_token_ids", limits.limit_name);
  if (!status.ok()) return status;
  if (request.max_new_tokens() < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_new_tokens is ", request.max_new_tokens(), "; it must be >= 1"));
  }
  if (request.max_new_tokens() > limits.max_new_tokens) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "max_new_tokens is ", request.max_new_tokens(), "; the limit is ",
        limits.max_new_tokens, " (", limits.limit_name, ")"));
  }
  const v1::SamplingParams& sampling = request.sampling();
  status =
      CheckSampling(sampling.temperature(), sampling.top_p(), sampling.top_k());
  if (!status.ok()) return status;
  status =
      CheckStopTokenIds(request.stop_token_ids(), limits.vocab_size,
                        kMaxStopTokenIds + kMaxEosTokenIds, "stop_token_ids");
  if (!status.ok()) return status;
  if (!v1::CachePolicy_IsValid(request.cache_policy())) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache_policy ", request.cache_policy(),
                     " is not a known CachePolicy"));
  }
  status = CheckLogprobs(request.logprobs());
  if (!status.ok()) return status;
  if (request.stored_prefix_tokens() < 0 ||
      request.stored_prefix_tokens() > request.prompt_token_ids_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "stored_prefix_tokens is ", request.stored_prefix_tokens(),
        "; it must be in [0, ", request.prompt_token_ids_size(), "]"));
  }
  if (request.cache_namespace().size() > kMaxCacheNamespaceBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("cache_namespace has ", request.cache_namespace().size(),
                     " bytes; the limit is ", kMaxCacheNamespaceBytes));
  }
  return absl::OkStatus();
}

}  // namespace longctx
