#include "services/gateway/request_validator.h"

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

absl::Status Invalid(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

}  // namespace

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(
    const v1::GenerateRequest& request, const v1::ModelInfo& model,
    const GatewayLimits& limits, uint64_t random_seed,
    const SamplingDefaults& defaults) {
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
    return Invalid("prompt is empty: set text, token_ids or messages");
  }
  if (request.has_text() &&
      request.text().size() > static_cast<size_t>(limits.max_text_bytes)) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "text has ", request.text().size(), " bytes; the limit is ",
        limits.max_text_bytes, " (--max_text_bytes)"));
  }

  // Sampling.
  const v1::SamplingParams& sampling = request.sampling();
  const float temperature = sampling.has_temperature() ? sampling.temperature()
                                                       : defaults.temperature;
  const float top_p = sampling.has_top_p() ? sampling.top_p() : defaults.top_p;
  // top_k has no presence: 0 (keep all) is also "unset".
  const int top_k = sampling.top_k() != 0 ? sampling.top_k() : defaults.top_k;
  absl::Status checked = CheckSampling(temperature, top_p, top_k);
  if (!checked.ok()) return checked;
  v1::SamplingParams* resolved = w.mutable_sampling();
  resolved->set_temperature(temperature);
  resolved->set_top_p(top_p);
  resolved->set_top_k(top_k);
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
  int default_new_tokens =
      std::min(limits.default_max_new_tokens, limits.max_new_tokens);
  if (defaults.max_new_tokens > 0) {
    default_new_tokens = std::min(default_new_tokens, defaults.max_new_tokens);
  }
  w.set_max_new_tokens(stopping.max_new_tokens() > 0 ? stopping.max_new_tokens()
                                                     : default_new_tokens);
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
  checked = CheckStopTokenIds(stopping.stop_token_ids(), model.vocab_size(),
                              kMaxStopTokenIds, "stopping.stop_token_ids");
  if (!checked.ok()) return checked;
  *w.mutable_stop_token_ids() = stopping.stop_token_ids();
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
  checked = CheckLogprobs(request.logprobs());
  if (!checked.ok()) return checked;
  *w.mutable_logprobs() = request.logprobs();
  w.set_request_id(request.request_id());
  return out;
}

absl::Status CheckPromptTokens(absl::Span<const int32_t> ids,
                               const v1::ModelInfo& model,
                               const GatewayLimits& limits,
                               const std::string& field) {
  return CheckPromptTokens(ids, model.vocab_size(), limits.max_prompt_tokens,
                           field, "--max_prompt_tokens");
}

}  // namespace longctx
