// Fuzz target: what the gateway does with a public GenerateRequest before and
// after the workers (services/gateway): validation and tokenization
// (GatewayModel::PrepareRequest, as GatewayServiceImpl::Generate calls it),
// then the relay of generated ids to text (the detokenizer's TextStream and
// the StopMatcher, fed one id at a time as GenerateCall does).
//
// Input: a serialized longctx.v1.GenerateRequest (the bytes a client sends;
// inputs that are not one are skipped). The model is a byte-tokenizer model
// (vocab 260, bos 256, eos 257) with a small chat template, under small
// limits so that every limit is within reach.
//
// Properties checked: a rejected request gets INVALID_ARGUMENT or
// RESOURCE_EXHAUSTED with a message; an accepted one has every default
// resolved and within its limit, and the prompt the request asked for (text:
// bos if add_bos, then the bytes; chat messages: the same for the prompt the
// template renders; else the ids). Relaying the prompt's ids as
// if generated gives valid UTF-8 that contains no stop sequence: all the text
// when no stop sequence occurs in it, else the text up to one.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "google/protobuf/stubs/logging.h"
#include "model/folder/chat_prompt.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "proto/longctx.pb.h"
#include "services/gateway/gateway_limits.h"
#include "services/gateway/gateway_model.h"
#include "services/gateway/stop_matcher.h"

namespace longctx {
namespace {

constexpr int kVocab = 260;
constexpr int kBos = 256;
constexpr int kEos = 257;

const GatewayModel& Model() {
  static const GatewayModel* model = [] {
    // Invalid UTF-8 in a string field fails the parse, as it should; the
    // library's log line about it would only slow the fuzzer down.
    google::protobuf::SetLogHandler(nullptr);
    ModelConfig config;
    config.architecture = "LlamaForCausalLM";
    config.vocab_size = kVocab;
    config.bos_token_id = kBos;
    config.eos_token_ids = {kEos};
    // A ChatML-style template, so that chat prompts render (their tool
    // calls and variables reach it too).
    absl::StatusOr<std::unique_ptr<ChatPromptRenderer>> chat =
        ChatPromptRenderer::FromSource(
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}"
            "{% if m.tool_calls %}{{ m.tool_calls | tojson }}{% endif %}"
            "{% endfor %}{% if tools %}{{ tools | tojson }}{% endif %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}",
            {{"bos_token", "<s>"}, {"eos_token", "</s>"}}, "fuzz template");
    FUZZ_CHECK(chat.ok(), "the fuzz template does not parse");
    return GatewayModel::Create(config, *ByteTokenizer::Create(config), "tiny",
                                GenerationConfig(), *std::move(chat))
        .release();
  }();
  return *model;
}

GatewayLimits Limits() {
  GatewayLimits limits;
  limits.max_prompt_tokens = 512;
  limits.max_new_tokens = 64;
  limits.default_max_new_tokens = 16;
  limits.max_text_bytes = 1024;
  return limits;
}

bool Contains(const std::vector<int32_t>& ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

void CheckPrepared(const v1::GenerateRequest& request,
                   const ValidatedRequest& prepared,
                   const GatewayLimits& limits) {
  const worker::v1::GenerateRequest& w = prepared.worker_request;
  const std::vector<int32_t> prompt(w.prompt_token_ids().begin(),
                                    w.prompt_token_ids().end());
  FUZZ_CHECK(!prompt.empty() &&
                 prompt.size() <= static_cast<size_t>(limits.max_prompt_tokens),
             "prompt of %zu tokens", prompt.size());
  for (int32_t id : prompt) {
    FUZZ_CHECK(id >= 0 && id < kVocab, "prompt id %d", id);
  }
  std::vector<int32_t> expected;
  if (request.has_text() || request.has_messages()) {
    std::string text = request.text();
    if (request.has_messages()) {
      absl::StatusOr<std::string> rendered =
          Model().RenderChat(request.messages(), limits);
      FUZZ_CHECK(rendered.ok(), "an accepted chat prompt does not render");
      text = *rendered;
    }
    if (request.add_bos()) expected.push_back(kBos);
    for (unsigned char c : text) expected.push_back(c);
  } else {
    expected.assign(request.token_ids().ids().begin(),
                    request.token_ids().ids().end());
  }
  FUZZ_CHECK(prompt == expected, "the prompt is not the one asked for");

  FUZZ_CHECK(
      w.max_new_tokens() >= 1 && w.max_new_tokens() <= limits.max_new_tokens,
      "max_new_tokens %d", w.max_new_tokens());
  const v1::SamplingParams& s = w.sampling();
  FUZZ_CHECK(s.has_temperature() && std::isfinite(s.temperature()) &&
                 s.temperature() >= 0,
             "temperature %f", s.temperature());
  FUZZ_CHECK(s.has_top_p() && s.top_p() > 0 && s.top_p() <= 1, "top_p %f",
             s.top_p());
  FUZZ_CHECK(s.top_k() >= 0 && s.has_seed(), "top_k or seed");
  const std::vector<int32_t> stop_ids(w.stop_token_ids().begin(),
                                      w.stop_token_ids().end());
  for (int32_t id : stop_ids) {
    FUZZ_CHECK(id >= 0 && id < kVocab, "stop id %d", id);
  }
  FUZZ_CHECK(request.stopping().ignore_eos() || Contains(stop_ids, kEos),
             "eos is not a stop id");
  FUZZ_CHECK(w.cache_policy() != v1::CACHE_POLICY_UNSPECIFIED &&
                 v1::CachePolicy_IsValid(w.cache_policy()),
             "cache_policy %d", w.cache_policy());
  FUZZ_CHECK(w.logprobs().top_logprobs() >= 0 &&
                 w.logprobs().top_logprobs() <= kMaxTopLogprobs,
             "top_logprobs");
  FUZZ_CHECK(prepared.stop_sequences.size() <= kMaxStopSequences,
             "stop sequences");
  for (const std::string& stop : prepared.stop_sequences) {
    FUZZ_CHECK(!stop.empty() && stop.size() <= kMaxStopSequenceBytes,
               "stop sequence of %zu bytes", stop.size());
  }
}

// Relay feeds `ids` as GenerateCall does and checks the text it would send.
void Relay(const ValidatedRequest& prepared, const std::vector<int32_t>& ids) {
  const GatewayModel& model = Model();
  // The reference: the detokenized text with no stop matching.
  std::unique_ptr<TextStream> plain = model.NewTextStream();
  std::string full;
  for (int32_t id : ids) full += plain->Push(absl::MakeConstSpan(&id, 1));
  full += plain->Flush();

  std::unique_ptr<TextStream> text = model.NewTextStream();
  StopMatcher stops(prepared.stop_sequences);
  std::string sent;
  for (int32_t id : ids) {
    if (stops.stopped()) break;
    FUZZ_CHECK(IsValidUtf8(text->TokenText(id)), "TokenText(%d)", id);
    sent += stops.Push(text->Push(absl::MakeConstSpan(&id, 1)));
  }
  if (!stops.stopped()) {
    sent += stops.Push(text->Flush());
    sent += stops.Flush();
  }
  FUZZ_CHECK(IsValidUtf8(sent), "the relayed text is not valid UTF-8");
  size_t first_stop = std::string::npos;
  for (const std::string& stop : prepared.stop_sequences) {
    FUZZ_CHECK(sent.find(stop) == std::string::npos,
               "the relayed text contains a stop sequence");
    first_stop = std::min(first_stop, full.find(stop));
  }
  FUZZ_CHECK(stops.stopped() == (first_stop != std::string::npos),
             "stopped() disagrees with the text");
  if (!stops.stopped()) {
    FUZZ_CHECK(sent == full, "the relayed text lost or changed bytes");
    return;
  }
  FUZZ_CHECK(full.compare(0, sent.size(), sent) == 0,
             "the relayed text is not a prefix of the text");
  bool at_stop = false;
  for (const std::string& stop : prepared.stop_sequences) {
    at_stop = at_stop || full.compare(sent.size(), stop.size(), stop) == 0;
  }
  FUZZ_CHECK(at_stop, "the relayed text does not end at a stop sequence");
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  const GatewayModel& model = Model();
  v1::GenerateRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  const GatewayLimits limits = Limits();
  absl::StatusOr<ValidatedRequest> prepared =
      model.PrepareRequest(request, limits, /*random_seed=*/42);
  if (!prepared.ok()) {
    const absl::StatusCode code = prepared.status().code();
    FUZZ_CHECK(code == absl::StatusCode::kInvalidArgument ||
                   code == absl::StatusCode::kResourceExhausted,
               "%s", prepared.status().ToString().c_str());
    FUZZ_CHECK(!prepared.status().message().empty(), "an empty message");
    return 0;
  }
  CheckPrepared(request, *prepared, limits);
  const auto& prompt = prepared->worker_request.prompt_token_ids();
  Relay(*prepared, std::vector<int32_t>(prompt.begin(), prompt.end()));
  return 0;
}
