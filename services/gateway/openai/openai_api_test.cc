#include "services/gateway/openai/openai_api.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace longctx::openai {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr size_t kMaxBody = 1 << 20;

TEST(OpenAiApiTest, CompletionRequestMapsEveryCommonField) {
  absl::StatusOr<ApiRequest> request =
      ParseRequest(Endpoint::kCompletions,
                   R"({"model": "tiny", "prompt": "Once upon", "max_tokens": 7,
          "temperature": 0.5, "top_p": 0.9, "seed": 42, "stop": ["\n", "END"],
          "stream": true, "stream_options": {"include_usage": true},
          "logprobs": 2, "n": 1, "user": "u1", "unknown_field": 3})",
                   kMaxBody);
  ASSERT_TRUE(request.ok()) << request.status();
  const v1::GenerateRequest& g = request->generate;
  EXPECT_EQ(g.model(), "tiny");
  EXPECT_EQ(g.text(), "Once upon");
  EXPECT_EQ(g.stopping().max_new_tokens(), 7);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_EQ(g.sampling().seed(), 42u);
  EXPECT_THAT(g.stopping().stop_sequences(),
              ::testing::ElementsAre("\n", "END"));
  EXPECT_TRUE(request->stream);
  EXPECT_TRUE(request->include_usage);
  EXPECT_TRUE(g.logprobs().enabled());
  EXPECT_EQ(g.logprobs().top_logprobs(), 2);
  // Token ids, alone or as a batch of one; max_tokens defaults to 16.
  request = ParseRequest(Endpoint::kCompletions, R"({"prompt": [[1, 2, 3]]})",
                         kMaxBody);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_THAT(request->generate.token_ids().ids(),
              ::testing::ElementsAre(1, 2, 3));
  EXPECT_EQ(request->generate.stopping().max_new_tokens(), 16);
}

TEST(OpenAiApiTest, ChatRequestMapsMessagesToolsAndVariables) {
  absl::StatusOr<ApiRequest> request = ParseRequest(Endpoint::kChatCompletions,
                                                    R"({"messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "},
                                         {"type": "text", "text": "there"}]},
            {"role": "assistant", "content": null,
             "tool_calls": [{"id": "c1", "type": "function",
                             "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}],
          "tools": [{"type": "function", "function": {"name": "f"}}],
          "tool_choice": "auto", "max_completion_tokens": 9,
          "logprobs": true, "top_logprobs": 3,
          "chat_template_kwargs": {"enable_thinking": false}})",
                                                    kMaxBody);
  ASSERT_TRUE(request.ok()) << request.status();
  const v1::ChatPrompt& chat = request->generate.messages();
  ASSERT_EQ(chat.messages_size(), 4);
  EXPECT_EQ(chat.messages(1).content(), "Hi there");
  EXPECT_EQ(json::parse(chat.messages(2).tool_calls_json())[0]["id"], "c1");
  EXPECT_EQ(chat.messages(3).tool_call_id(), "c1");
  EXPECT_EQ(json::parse(chat.tools_json()).size(), 1u);
  EXPECT_EQ(json::parse(chat.template_variables_json())["enable_thinking"],
            false);
  EXPECT_TRUE(chat.add_generation_prompt());
  EXPECT_EQ(request->generate.stopping().max_new_tokens(), 9);
  EXPECT_EQ(request->generate.logprobs().top_logprobs(), 3);
}

TEST(OpenAiApiTest, WhatLongctxDoesNotDoIsRefusedByName) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"prompt": "x", "n": 2})", "n: "},
      {R"({"prompt": "x", "best_of": 3})", "best_of: "},
      {R"({"prompt": "x", "echo": true})", "echo: "},
      {R"({"prompt": "x", "suffix": "y"})", "suffix: "},
      {R"({"prompt": "x", "presence_penalty": 0.5})", "presence_penalty: "},
      {R"({"prompt": "x", "logit_bias": {"1": 5}})", "logit_bias: "},
      {R"({"prompt": ["a", "b"]})", "prompt: "},
      {R"({"prompt": "x", "temperature": "hot"})", "temperature: "},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens: "},
      {R"({"prompt": "x", "logprobs": 9})", "logprobs: "},
      {R"({"max_tokens": 3})", "prompt: "},
      {R"([1, 2])", "request body must be a JSON object"},
      {R"({"prompt": )", "request body is not valid JSON"},
  };
  for (const auto& [body, expected] : cases) {
    absl::StatusOr<ApiRequest> request =
        ParseRequest(Endpoint::kCompletions, body, kMaxBody);
    ASSERT_FALSE(request.ok()) << body;
    EXPECT_EQ(request.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(request.status().message(), HasSubstr(expected)) << body;
    EXPECT_EQ(ErrorFor(request.status()).http_status, 400);
  }
  absl::StatusOr<ApiRequest> chat = ParseRequest(
      Endpoint::kChatCompletions,
      R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
      kMaxBody);
  ASSERT_FALSE(chat.ok());
  EXPECT_THAT(chat.status().message(), HasSubstr("messages[0].content"));
  chat = ParseRequest(Endpoint::kChatCompletions,
                      R"({"messages": [{"role": "user", "content": "x"}],
                          "tool_choice": "required"})",
                      kMaxBody);
  ASSERT_FALSE(chat.ok());
  EXPECT_EQ(ErrorFor(chat.status()).body["error"]["param"], "tool_choice");
}

TEST(OpenAiApiTest, LimitsAndErrorsMapToHttpStatuses) {
  absl::StatusOr<ApiRequest> big =
      ParseRequest(Endpoint::kCompletions, std::string(100, ' '), 99);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(ErrorFor(big.status()).http_status, 413);
  // Hostile nesting is refused before parsing.
  big = ParseRequest(
      Endpoint::kCompletions,
      "{\"prompt\": " + std::string(1000, '[') + std::string(1000, ']') + "}",
      kMaxBody);
  ASSERT_FALSE(big.ok());
  EXPECT_THAT(big.status().message(), HasSubstr("nests deeper"));
  EXPECT_EQ(ErrorFor(absl::ResourceExhaustedError("slots")).http_status, 429);
  EXPECT_EQ(ErrorFor(absl::UnauthenticatedError("token")).http_status, 401);
  EXPECT_EQ(ErrorFor(absl::UnavailableError("no group")).http_status, 503);
  EXPECT_EQ(ErrorFor(absl::NotFoundError("x")).http_status, 404);
  const ApiError internal = ErrorFor(absl::InternalError("boom"));
  EXPECT_EQ(internal.http_status, 500);
  EXPECT_EQ(internal.body["error"]["message"], "boom");
  EXPECT_EQ(internal.body["error"]["type"], "server_error");
}

std::vector<v1::GenerateResponse> Stream() {
  std::vector<v1::GenerateResponse> messages(2);
  messages[0].set_text("Hel");
  messages[0].add_token_ids(5);
  v1::TokenLogprob* lp = messages[0].add_logprobs();
  lp->set_token_id(5);
  lp->set_logprob(-0.5f);
  v1::TopLogprob* top = lp->add_top();
  top->set_token_id(5);
  top->set_text("Hel");
  top->set_logprob(-0.5f);
  messages[1].set_text("lo");
  messages[1].set_finish_reason(v1::FINISH_REASON_STOP_SEQUENCE);
  messages[1].mutable_usage()->set_prompt_tokens(10);
  messages[1].mutable_usage()->set_cached_tokens(8);
  messages[1].mutable_usage()->set_generated_tokens(2);
  return messages;
}

TEST(OpenAiApiTest, WholeResponsesJoinTheStream) {
  ApiRequest request;
  request.endpoint = Endpoint::kChatCompletions;
  request.logprobs = true;
  const ResponseInfo info{"chatcmpl-1", "tiny", 1700000000};
  json response = CompletionResponse(request, info, Stream());
  EXPECT_EQ(response["object"], "chat.completion");
  EXPECT_EQ(response["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(response["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(response["choices"][0]["logprobs"]["content"][0]["token"], "Hel");
  EXPECT_EQ(response["usage"]["total_tokens"], 12);
  EXPECT_EQ(response["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
  request.endpoint = Endpoint::kCompletions;
  response = CompletionResponse(request, info, Stream());
  EXPECT_EQ(response["object"], "text_completion");
  EXPECT_EQ(response["choices"][0]["text"], "Hello");
  EXPECT_EQ(response["choices"][0]["logprobs"]["token_logprobs"][0], -0.5);
}

TEST(OpenAiApiTest, StreamedChunksAreServerSentEvents) {
  ApiRequest request;
  request.endpoint = Endpoint::kChatCompletions;
  request.include_usage = true;
  const ResponseInfo info{"chatcmpl-1", "tiny", 1700000000};
  const std::vector<v1::GenerateResponse> stream = Stream();
  const std::string first = ChunkEvents(request, info, stream[0], true);
  const std::string last = ChunkEvents(request, info, stream[1], false);
  // First: the role, then the text; last: text, finish reason, usage.
  std::vector<json> events;
  for (const std::string& text : {first, last}) {
    size_t at = 0;
    while ((at = text.find("data: ", at)) != std::string::npos) {
      const size_t end = text.find("\n\n", at);
      ASSERT_NE(end, std::string::npos);
      events.push_back(json::parse(text.substr(at + 6, end - at - 6)));
      at = end;
    }
  }
  ASSERT_EQ(events.size(), 5u);
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events[1]["choices"][0]["delta"]["content"], "Hel");
  EXPECT_EQ(events[2]["choices"][0]["delta"]["content"], "lo");
  EXPECT_EQ(events[3]["choices"][0]["finish_reason"], "stop");
  EXPECT_TRUE(events[3]["usage"].is_null());
  EXPECT_TRUE(events[4]["choices"].empty());
  EXPECT_EQ(events[4]["usage"]["completion_tokens"], 2);
  EXPECT_EQ(events[4]["object"], "chat.completion.chunk");
}

}  // namespace
}  // namespace longctx::openai
