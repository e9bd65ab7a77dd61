#include "services/gateway/request_validator.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

}  // namespace

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(
    const v1::GenerateRequest& request, const v1::ModelInfo& model,
    const GatewayLimits& limits, uint64_t random_seed) {
  ValidatedRequest out;
  worker::v1::GenerateRequest& w = out.worker_request;

  if (request.request_id().size() > kMaxRequestIdChars) {
    return Invalid(absl::StrCat("request_id has ", request.request_id().size(),
                                " characters; the limit is ",
                                kMaxRequestIdChars));
  }
  if (!request.model().empty() && request.model() != model.name()) {
    return Invalid(absl::StrCat("model \"", request.model(),
                                "\" is not served here; this gateway serves \"",
                                model.name(), "\""));
  }
  if (request.prompt_case() == v1::GenerateRequest::PROMPT_NOT_SET) {
    return Invalid("prompt is empty: set text or token_ids");
  }
  if (request.has_text() &&
      request.text().size() > static_cast<size_t>(limits.max_text_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "text has ", request.text().size(), " bytes; the limit is ",
        limits.max_text_bytes, " (--max_text_bytes)"));
  }

  // Sampling.
  const v1::SamplingParams& sampling = request.sampling();
  float temperature =
      sampling.has_temperature() ? sampling.temperature() : 1.0f;
  if (!std::isfinite(temperature) || temperature < 0) {
    return Invalid(absl::StrCat("sampling.temperature is ", temperature,
                                "; it must be >= 0 (0 is greedy)"));
  }
  float top_p = sampling.has_top_p() ? sampling.top_p() : 1.0f;
  if (!(top_p > 0 && top_p <= 1)) {
    return Invalid(
        absl::StrCat("sampling.top_p is ", top_p, "; it must be in (0, 1]"));
  }
  if (sampling.top_k() < 0) {
    return Invalid(absl::StrCat("sampling.top_k is ", sampling.top_k(),
                                "; it must be >= 0 (0 keeps all tokens)"));
  }
  v1::SamplingParams* resolved = w.mutable_sampling();
  resolved->set_temperature(temperature);
  resolved->set_top_p(top_p);
  resolved->set_top_k(sampling.top_k());
  resolved->set_seed(sampling.has_seed() ? sampling.seed() : random_seed);

  // Stopping.
  const v1::StoppingCriteria& stopping = request.stopping();
  if (stopping.max_new_tokens() < 0) {
    return Invalid(absl::StrCat("stopping.max_new_tokens is ",
                                stopping.max_new_tokens(),
                                "; it must be >= 0"));
  }
  if (stopping.max_new_tokens() > limits.max_new_tokens) {
    return Invalid(absl::StrCat("stopping.max_new_tokens is ",
                                stopping.max_new_tokens(), "; the limit is ",
                                limits.max_new_tokens, " (--max_new_tokens)"));
  }
  w.set_max_new_tokens(
      stopping.max_new_tokens() > 0
          ? stopping.max_new_tokens()
          : std::min(limits.default_max_new_tokens, limits.max_new_tokens));
  if (stopping.stop_sequences_size() > kMaxStopSequences) {
    return Invalid(absl::StrCat("stopping.stop_sequences has ",
                                stopping.stop_sequences_size(),
                                " entries; the limit is ", kMaxStopSequences));
  }
  for (int i = 0; i < stopping.stop_sequences_size(); ++i) {
    const std::string& stop = stopping.stop_sequences(i);
    if (stop.empty() || stop.size() > kMaxStopSequenceBytes) {
      return Invalid(absl::StrCat("stopping.stop_sequences[", i, "] has ",
                                  stop.size(), " bytes; it must have 1 to ",
                                  kMaxStopSequenceBytes));
    }
    out.stop_sequences.push_back(stop);
  }
  if (stopping.stop_token_ids_size() > kMaxStopTokenIds) {
    return Invalid(absl::StrCat("stopping.stop_token_ids has ",
                                stopping.stop_token_ids_size(),
                                " entries; the limit is ", kMaxStopTokenIds));
  }
  for (int i = 0; i < stopping.stop_token_ids_size(); ++i) {
    int id = stopping.stop_token_ids(i);
    if (id < 0 || id >= model.vocab_size()) {
      return Invalid(absl::StrCat("stopping.stop_token_ids[", i, "] is ", id,
                                  ", outside the vocabulary [0, ",
                                  model.vocab_size(), ")"));
    }
    w.add_stop_token_ids(id);
  }
  if (!stopping.ignore_eos()) {
    for (int id : model.eos_token_ids()) w.add_stop_token_ids(id);
  }

  // Cache policy and log-probabilities.
  if (!v1::CachePolicy_IsValid(request.cache_policy())) {
    return Invalid(absl::StrCat("cache_policy ", request.cache_policy(),
                                " is not a known CachePolicy"));
  }
  const v1::CachePolicy policy =
      request.cache_policy() == v1::CACHE_POLICY_UNSPECIFIED
          ? v1::CACHE_POLICY_READ_WRITE
          : request.cache_policy();
  w.set_cache_policy(policy);
  out.cache_read = policy == v1::CACHE_POLICY_READ_WRITE ||
                   policy == v1::CACHE_POLICY_READ_ONLY;
  out.cache_write = policy == v1::CACHE_POLICY_READ_WRITE ||
                    policy == v1::CACHE_POLICY_WRITE_ONLY;
  const v1::LogprobsOptions& logprobs = request.logprobs();
  if (logprobs.top_logprobs() < 0 ||
      logprobs.top_logprobs() > kMaxTopLogprobs) {
    return Invalid(absl::StrCat("logprobs.top_logprobs is ",
                                logprobs.top_logprobs(), "; it must be in [0, ",
                                kMaxTopLogprobs, "]"));
  }
  if (logprobs.top_logprobs() > 0 && !logprobs.enabled()) {
    return Invalid(
        "logprobs.top_logprobs is set but logprobs.enabled is false");
  }
  *w.mutable_logprobs() = logprobs;
  w.set_request_id(request.request_id());
  return out;
}

absl::Status CheckPromptTokens(absl::Span<const int32_t> ids,
                               const v1::ModelInfo& model,
                               const GatewayLimits& limits,
                               const std::string& field) {
  if (ids.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("prompt is empty: ", field, " has no tokens"));
  }
  if (ids.size() > static_cast<size_t>(limits.max_prompt_tokens)) {
    return absl::ResourceExhaustedError(
        absl::StrCat("prompt has ", ids.size(), " tokens; the limit is ",
                     limits.max_prompt_tokens, " (--max_prompt_tokens)"));
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= model.vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, "[", i, "] is ", ids[i], ", outside the vocabulary [0, ",
          model.vocab_size(), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace longctx
