// The OpenAI-compatible HTTP API end to end: a stack whose gateway listens
// on --http_address, serving a tiny model laid out like a Qwen2 checkpoint
// (tokenizer.json and a chat template), called with curl and with the
// official OpenAI Node SDK.
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/longctx.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
#include "tests/testing/generate.h"
#include "tests/testing/process.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using ::testing::HasSubstr;
using json = nlohmann::json;

constexpr char kToken[] = "openai-http-test-token-0001";

struct HttpResult {
  int status = 0;
  std::string body;
};

class OpenAiHttpTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    port_ = testing::FreePort();
    stack_ = new testing::LocalStack();
    testing::StackOptions options;
    options.model_flags = {"--tokenizer=qwen2", "--tokenizer_merges=600"};
    // Clients need a bearer token, on HTTP as on gRPC.
    const std::string tokens = testing::NewTempDir("openai_http") + "/tokens";
    std::ofstream(tokens) << kToken << "\n";
    options.gateway_flags = {absl::StrCat("--http_address=127.0.0.1:", port_),
                             "--auth_tokens_file=" + tokens,
                             // Room for a generation that outlasts its client.
                             "--max_new_tokens=100000"};
    absl::Status status = stack_->Start(options);
    ASSERT_TRUE(status.ok()) << status;
  }
  static void TearDownTestSuite() { delete stack_; }

  // Curl calls `path` (POST with `body` when given) and returns the status
  // and the body.
  static HttpResult Curl(const std::string& path, const std::string& body = "",
                         const std::string& token = kToken) {
    std::vector<std::string> argv = {"/usr/bin/curl", "-sS", "-N",
                                     "--max-time",    "60",  "-w",
                                     "\n%{http_code}"};
    if (!token.empty()) {
      argv.insert(argv.end(), {"-H", "Authorization: Bearer " + token});
    }
    if (!body.empty()) {
      argv.insert(argv.end(), {"-H", "Content-Type: application/json",
                               "--data-binary", "@-"});
    }
    argv.push_back(absl::StrCat("http://127.0.0.1:", port_, path));
    std::string output;
    absl::StatusOr<int> rc = testing::RunCommand(argv, body, &output);
    HttpResult result;
    if (!rc.ok() || *rc != 0) return result;
    const size_t newline = output.rfind('\n');
    result.status = std::atoi(output.c_str() + newline + 1);
    result.body = output.substr(0, newline);
    return result;
  }

  static json Json(const HttpResult& result) {
    return json::parse(result.body, nullptr, /*allow_exceptions=*/false);
  }

  static int port_;
  static testing::LocalStack* stack_;
};

int OpenAiHttpTest::port_ = 0;
testing::LocalStack* OpenAiHttpTest::stack_ = nullptr;

TEST_F(OpenAiHttpTest, HealthAndModels) {
  // Health needs no token; everything else does.
  HttpResult health = Curl("/health", "", "");
  EXPECT_EQ(health.status, 200) << health.body;
  HttpResult models = Curl("/v1/models");
  ASSERT_EQ(models.status, 200) << models.body;
  EXPECT_EQ(Json(models)["data"][0]["id"], "model");
  EXPECT_EQ(Json(models)["object"], "list");
}

TEST_F(OpenAiHttpTest, CompletionsMatchTheGrpcPath) {
  HttpResult http = Curl("/v1/completions",
                         R"({"prompt": "Once upon a time", "max_tokens": 6,
                             "temperature": 0, "ignore_eos": true})");
  ASSERT_EQ(http.status, 200) << http.body << stack_->Logs();
  const json response = Json(http);
  EXPECT_EQ(response["object"], "text_completion");
  EXPECT_EQ(response["usage"]["completion_tokens"], 6);
  EXPECT_EQ(response["choices"][0]["finish_reason"], "length");
  v1::GenerateRequest request;
  request.set_text("Once upon a time");
  request.mutable_stopping()->set_max_new_tokens(6);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_sampling()->set_temperature(0);
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack_->gateway().address(), grpc::InsecureChannelCredentials()));
  testing::GenerateResult grpc =
      testing::Generate(*stub, request, absl::Seconds(60), &context);
  ASSERT_TRUE(grpc.status.ok());
  EXPECT_EQ(response["choices"][0]["text"], grpc.text);
  EXPECT_EQ(response["usage"]["prompt_tokens"],
            grpc.last.usage().prompt_tokens());
}

TEST_F(OpenAiHttpTest, ChatStreamsServerSentEventsEqualToTheWholeAnswer) {
  const std::string body =
      R"({"messages": [{"role": "system", "content": "Be brief."},
                       {"role": "user", "content": "What is in chapter 3?"}],
          "max_tokens": 8, "temperature": 0, "ignore_eos": true)";
  HttpResult whole = Curl("/v1/chat/completions", body + "}");
  ASSERT_EQ(whole.status, 200) << whole.body;
  const std::string content =
      Json(whole)["choices"][0]["message"]["content"].get<std::string>();
  HttpResult streamed = Curl(
      "/v1/chat/completions",
      body + R"(, "stream": true, "stream_options": {"include_usage": true}})");
  ASSERT_EQ(streamed.status, 200) << streamed.body;
  std::string joined;
  json usage;
  bool done = false;
  size_t at = 0;
  while ((at = streamed.body.find("data: ", at)) != std::string::npos) {
    const size_t end = streamed.body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos);
    const std::string data = streamed.body.substr(at + 6, end - at - 6);
    at = end;
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json chunk = json::parse(data);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (!chunk["choices"].empty()) {
      const json& delta = chunk["choices"][0]["delta"];
      if (delta.contains("content"))
        joined += delta["content"].get<std::string>();
    } else {
      usage = chunk["usage"];
    }
  }
  EXPECT_TRUE(done);
  EXPECT_EQ(joined, content);
  EXPECT_EQ(usage["completion_tokens"], 8);
}

TEST_F(OpenAiHttpTest, ALongDocumentReportsCachedTokensTheSecondTime) {
  std::string document;
  for (int i = 0; document.size() < 6000; ++i) {
    absl::StrAppend(&document, "Clause ", i, " binds the parties. ");
  }
  const std::string body =
      json({{"prompt", document}, {"max_tokens", 2}, {"temperature", 0}})
          .dump();
  HttpResult first = Curl("/v1/completions", body);
  ASSERT_EQ(first.status, 200) << first.body;
  HttpResult second = Curl("/v1/completions", body);
  ASSERT_EQ(second.status, 200) << second.body;
  EXPECT_GT(Json(second)["usage"]["prompt_tokens_details"]["cached_tokens"], 0);
}

TEST_F(OpenAiHttpTest, AClientThatLeavesCancelsItsGeneration) {
  // curl gives up after 1 s of a stream that would run far longer.
  std::string output;
  absl::StatusOr<int> rc = testing::RunCommand(
      {"/usr/bin/curl", "-sS", "-N", "--max-time", "1", "-H",
       absl::StrCat("Authorization: Bearer ", kToken), "-H",
       "Content-Type: application/json", "--data-binary", "@-",
       absl::StrCat("http://127.0.0.1:", port_, "/v1/completions")},
      R"({"prompt": "go on", "max_tokens": 100000, "ignore_eos": true,
          "stream": true})",
      &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_NE(*rc, 0);  // Timed out.
  EXPECT_THAT(output, HasSubstr("data: "));
  // The gateway counts it cancelled, long before 100,000 tokens are made.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  bool cancelled = false;
  while (!cancelled && absl::Now() < deadline) {
    absl::StatusOr<std::string> metrics =
        testing::HttpGet(stack_->gateway().metrics_port, "/metrics");
    cancelled = metrics.ok() &&
                metrics->find("longctx_requests_total{code=\"CANCELLED\"} 1") !=
                    std::string::npos;
    if (!cancelled) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(cancelled) << stack_->Logs();
}

// The official OpenAI Node SDK, pointed at the stack with base_url.
TEST_F(OpenAiHttpTest, TheOfficialSdkStreamsCompletionsAndChats) {
  // Its node_modules live beside the script in the source tree.
  char resolved[PATH_MAX];
  const std::string script =
      testing::RunfilePath("tests/openai_sdk/sdk_test.mjs");
  ASSERT_NE(realpath(script.c_str(), resolved), nullptr) << script;
  const std::string dir =
      std::string(resolved).substr(0, std::string(resolved).rfind('/'));
  ASSERT_EQ(access((dir + "/node_modules/openai").c_str(), F_OK), 0)
      << dir << "/node_modules is missing: run tools/setup_deploy_tests.sh";
  std::string output;
  absl::StatusOr<int> rc = testing::RunCommand(
      {"/usr/bin/node", resolved,
       absl::StrCat("http://127.0.0.1:", port_, "/v1"), kToken},
      "", &output);
  ASSERT_TRUE(rc.ok());
  EXPECT_EQ(*rc, 0) << output;
  EXPECT_THAT(output, HasSubstr("ok: a streamed chat equals the whole answer"));
}

TEST_F(OpenAiHttpTest, ErrorsHaveTheOpenAiShapeAndStatus) {
  HttpResult r = Curl("/v1/completions", R"({"prompt": "x", "n": 2})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(Json(r)["error"]["param"], "n");
  EXPECT_EQ(Json(r)["error"]["type"], "invalid_request_error");
  r = Curl("/v1/completions", R"({"prompt": )");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Json(r)["error"]["message"].get<std::string>(),
              HasSubstr("not valid JSON"));
  r = Curl("/v1/completions", R"({"prompt": "x", "model": "gpt-4"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Json(r)["error"]["message"].get<std::string>(),
              HasSubstr("is not served here"));
  r = Curl("/v1/nothing-here");
  EXPECT_EQ(r.status, 404);
  EXPECT_TRUE(Json(r).contains("error"));
  r = Curl("/v1/chat/completions",
           R"({"messages": [{"role": "user", "content": "hi"}],
               "max_tokens": 1000000})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(Json(r)["error"]["message"].get<std::string>(),
              HasSubstr("--max_new_tokens"));
  r = Curl("/v1/models", "", "");
  EXPECT_EQ(r.status, 401);
  EXPECT_EQ(Json(r)["error"]["type"], "authentication_error");
  r = Curl("/v1/completions", R"({"prompt": "x"})", "not-a-token");
  EXPECT_EQ(r.status, 401);
  // Still serving.
  r = Curl("/v1/completions", R"({"prompt": "x", "max_tokens": 2})");
  EXPECT_EQ(r.status, 200) << r.body;
}

}  // namespace
}  // namespace longctx
