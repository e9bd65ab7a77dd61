#include "services/gateway/request_validator.h"

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;

v1::ModelInfo Model() {
  v1::ModelInfo model;
  model.set_name("tiny");
  model.set_vocab_size(258);
  model.add_eos_token_ids(257);
  return model;
}

v1::GenerateRequest Valid() {
  v1::GenerateRequest request;
  request.set_text("hello");
  return request;
}

void ExpectInvalid(const v1::GenerateRequest& request,
                   const std::string& field) {
  GatewayLimits limits;
  auto result = ValidateGenerateRequest(request, Model(), limits, 1);
  ASSERT_FALSE(result.ok()) << field;
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument)
      << field;
  EXPECT_THAT(result.status().message(), HasSubstr(field));
}

TEST(ValidateGenerateRequestTest, ResolvesDefaults) {
  GatewayLimits limits;
  limits.default_max_new_tokens = 50;
  auto result = ValidateGenerateRequest(Valid(), Model(), limits, 1234);
  ASSERT_TRUE(result.ok()) << result.status();
  const worker::v1::GenerateRequest& w = result->worker_request;
  EXPECT_EQ(w.sampling().temperature(), 1.0f);
  EXPECT_EQ(w.sampling().top_p(), 1.0f);
  EXPECT_EQ(w.sampling().seed(), 1234u);
  EXPECT_EQ(w.max_new_tokens(), 50);
  EXPECT_THAT(w.stop_token_ids(), ::testing::ElementsAre(257));
  EXPECT_EQ(w.cache_policy(), v1::CACHE_POLICY_READ_WRITE);
}

TEST(ValidateGenerateRequestTest, KeepsExplicitSettings) {
  v1::GenerateRequest request = Valid();
  request.mutable_sampling()->set_temperature(0);
  request.mutable_sampling()->set_seed(7);
  request.mutable_stopping()->set_max_new_tokens(9);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_stopping()->add_stop_token_ids(10);
  request.mutable_stopping()->add_stop_sequences("\n");
  auto result = ValidateGenerateRequest(request, Model(), GatewayLimits(), 1);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->worker_request.sampling().temperature(), 0.0f);
  EXPECT_EQ(result->worker_request.sampling().seed(), 7u);
  EXPECT_EQ(result->worker_request.max_new_tokens(), 9);
  EXPECT_THAT(result->worker_request.stop_token_ids(),
              ::testing::ElementsAre(10));
  EXPECT_THAT(result->stop_sequences, ::testing::ElementsAre("\n"));
}

TEST(ValidateGenerateRequestTest, RejectsEachBadFieldNamingIt) {
  v1::GenerateRequest r;
  ExpectInvalid(r, "prompt is empty");

  r = Valid();
  r.mutable_sampling()->set_temperature(-0.5f);
  ExpectInvalid(r, "sampling.temperature");
  r = Valid();
  r.mutable_sampling()->set_temperature(std::nanf(""));
  ExpectInvalid(r, "sampling.temperature");
  for (float p : {0.0f, -0.1f, 1.5f}) {
    r = Valid();
    r.mutable_sampling()->set_top_p(p);
    ExpectInvalid(r, "sampling.top_p");
  }
  r = Valid();
  r.mutable_sampling()->set_top_k(-1);
  ExpectInvalid(r, "sampling.top_k");
  r = Valid();
  r.mutable_stopping()->set_max_new_tokens(4097);
  ExpectInvalid(r, "--max_new_tokens");
  r = Valid();
  r.mutable_stopping()->set_max_new_tokens(-1);
  ExpectInvalid(r, "stopping.max_new_tokens");
  r = Valid();
  r.mutable_stopping()->add_stop_sequences("");
  ExpectInvalid(r, "stopping.stop_sequences[0]");
  r = Valid();
  r.mutable_stopping()->add_stop_token_ids(258);
  ExpectInvalid(r, "stopping.stop_token_ids[0] is 258");
  r = Valid();
  r.set_model("other");
  ExpectInvalid(r, "model \"other\"");
  r = Valid();
  r.mutable_logprobs()->set_enabled(true);
  r.mutable_logprobs()->set_top_logprobs(21);
  ExpectInvalid(r, "logprobs.top_logprobs");
  r = Valid();
  r.set_cache_policy(static_cast<v1::CachePolicy>(99));
  ExpectInvalid(r, "cache_policy");
  r = Valid();
  r.set_request_id(std::string(129, 'x'));
  ExpectInvalid(r, "request_id");
}

TEST(CheckPromptTokensTest, ChecksEmptinessRangeAndLength) {
  GatewayLimits limits;
  limits.max_prompt_tokens = 4;
  std::vector<int32_t> ok = {1, 2, 257};
  EXPECT_TRUE(CheckPromptTokens(ok, Model(), limits, "token_ids.ids").ok());

  absl::Status empty = CheckPromptTokens({}, Model(), limits, "token_ids.ids");
  EXPECT_EQ(empty.code(), absl::StatusCode::kInvalidArgument);

  std::vector<int32_t> outside = {1, 258};
  absl::Status bad =
      CheckPromptTokens(outside, Model(), limits, "token_ids.ids");
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.message(), HasSubstr("token_ids.ids[1] is 258"));

  std::vector<int32_t> negative = {-1};
  EXPECT_EQ(CheckPromptTokens(negative, Model(), limits, "x").code(),
            absl::StatusCode::kInvalidArgument);

  std::vector<int32_t> long_prompt = {1, 2, 3, 4, 5};
  absl::Status too_long =
      CheckPromptTokens(long_prompt, Model(), limits, "token_ids.ids");
  EXPECT_EQ(too_long.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(
      too_long.message(),
      HasSubstr("prompt has 5 tokens; the limit is 4 (--max_prompt_tokens)"));
}

// The derived receive limit admits the largest valid request: a prompt of
// --max_prompt_tokens ids of the widest encoding, or of --max_text_bytes of
// text, with every other field at its protocol limit.
TEST(ReceiveLimitTest, AdmitsTheLargestValidRequest) {
  GatewayLimits limits;
  limits.max_prompt_tokens = 131072;
  limits.max_text_bytes = DefaultMaxTextBytes(limits.max_prompt_tokens);
  EXPECT_EQ(limits.max_text_bytes, 1 << 20);
  v1::GenerateRequest request;
  request.set_request_id(std::string(kMaxRequestIdChars, 'r'));
  request.set_model(std::string(256, 'm'));
  for (int i = 0; i < kMaxStopSequences; ++i) {
    request.mutable_stopping()->add_stop_sequences(
        std::string(kMaxStopSequenceBytes, 's'));
  }
  for (int i = 0; i < kMaxStopTokenIds; ++i) {
    request.mutable_stopping()->add_stop_token_ids(0x7fffffff);
  }
  request.mutable_stopping()->set_max_new_tokens(0x7fffffff);
  request.mutable_sampling()->set_seed(~uint64_t{0});
  request.mutable_sampling()->set_temperature(1);
  request.mutable_sampling()->set_top_p(1);
  request.mutable_sampling()->set_top_k(0x7fffffff);
  request.mutable_logprobs()->set_enabled(true);
  request.mutable_logprobs()->set_top_logprobs(kMaxTopLogprobs);
  v1::GenerateRequest ids = request;
  ids.mutable_token_ids()->mutable_ids()->Resize(limits.max_prompt_tokens,
                                                 0x7fffffff);
  EXPECT_LE(ids.ByteSizeLong(), static_cast<size_t>(ReceiveLimitBytes(limits)));
  v1::GenerateRequest text = request;
  text.set_text(std::string(limits.max_text_bytes, 'x'));
  EXPECT_LE(text.ByteSizeLong(),
            static_cast<size_t>(ReceiveLimitBytes(limits)));
  // The largest chat prompt: as many turns as allowed, their strings as long
  // as allowed in all, every optional field set.
  v1::GenerateRequest chat = request;
  const int per_turn = limits.max_text_bytes / limits.max_chat_messages;
  for (int i = 0; i < limits.max_chat_messages; ++i) {
    v1::ChatMessage* turn = chat.mutable_messages()->add_messages();
    turn->set_role("r");
    turn->set_name("n");
    turn->set_tool_call_id("i");
    turn->set_tool_calls_json("[]");
    turn->set_content(std::string(per_turn - 5, 'x'));
  }
  EXPECT_LE(chat.ByteSizeLong(),
            static_cast<size_t>(ReceiveLimitBytes(limits)));
  // And not much more: a prompt twice as long does not fit.
  ids.mutable_token_ids()->mutable_ids()->Resize(2 * limits.max_prompt_tokens,
                                                 0x7fffffff);
  EXPECT_GT(ids.ByteSizeLong(), static_cast<size_t>(ReceiveLimitBytes(limits)));
}

}  // namespace
}  // namespace longctx
