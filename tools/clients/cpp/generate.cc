// generate: streams a continuation of a prompt from a file or stdin to stdout.
//
//   generate --address=127.0.0.1:50051 --max_new_tokens=64 < book.txt
//
// With TLS and a bearer token:
//
//   generate --address=gw.example:50051 --tls_ca=ca.crt --token_file=token
//
// Every GenerateRequest option is a flag; usage, finish reason and timings go
// to stderr at the end. Exit code 0 on success, 1 on an RPC error (status
// printed).
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tools/clients/cpp/client_flags.h"
#include "tools/clients/cpp/longctx_client.h"

ABSL_FLAG(std::string, file, "", "Prompt file; empty reads stdin.");
ABSL_FLAG(std::string, token_ids, "",
          "Comma-separated prompt token ids instead of text.");
ABSL_FLAG(bool, chat, false,
          "Send the prompt as a user message, rendered by the model's chat "
          "template.");
ABSL_FLAG(std::string, system, "",
          "With --chat: a system message before the user's.");
ABSL_FLAG(bool, add_bos, false,
          "Prepend the model's BOS token to a text prompt.");
ABSL_FLAG(std::string, model, "",
          "Expected model name (checked by the server).");
ABSL_FLAG(std::string, request_id, "", "Request id for the server's logs.");
ABSL_FLAG(int, max_new_tokens, 0,
          "Most new tokens; 0 uses the server's default.");
ABSL_FLAG(std::string, temperature, "", "Sampling temperature (0 = greedy).");
ABSL_FLAG(int, top_k, 0, "Top-k truncation; 0 keeps all.");
ABSL_FLAG(std::string, top_p, "", "Nucleus sampling threshold in (0, 1].");
ABSL_FLAG(std::string, seed, "", "Sampling seed.");
ABSL_FLAG(std::vector<std::string>, stop, {},
          "Stop sequences (comma-separated).");
ABSL_FLAG(std::string, stop_token_ids, "", "Comma-separated stop token ids.");
ABSL_FLAG(bool, ignore_eos, false, "Keep generating past end-of-sequence.");
ABSL_FLAG(std::string, cache_policy, "read_write",
          "read_write, read_only, write_only or disabled.");
ABSL_FLAG(bool, logprobs, false,
          "Print each token's log-probability to stderr.");
ABSL_FLAG(int, top_logprobs, 0, "Alternatives per token with --logprobs.");
ABSL_FLAG(int, deadline_seconds, 600, "Deadline of the call.");

namespace {

bool ParseIds(const std::string& text,
              google::protobuf::RepeatedField<int32_t>* out) {
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int32_t id;
    if (!absl::SimpleAtoi(item, &id)) return false;
    out->Add(id);
  }
  return true;
}

int Fail(const std::string& message) {
  std::cerr << "generate: " << message << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Streams a continuation from a longctx gateway.");
  absl::ParseCommandLine(argc, argv);
  longctx::v1::GenerateRequest request;
  if (!absl::GetFlag(FLAGS_token_ids).empty()) {
    if (!ParseIds(absl::GetFlag(FLAGS_token_ids),
                  request.mutable_token_ids()->mutable_ids())) {
      return Fail("--token_ids must be comma-separated integers");
    }
  } else {
    std::stringstream text;
    if (absl::GetFlag(FLAGS_file).empty()) {
      text << std::cin.rdbuf();
    } else {
      std::ifstream file(absl::GetFlag(FLAGS_file), std::ios::binary);
      if (!file) return Fail("cannot read --file=" + absl::GetFlag(FLAGS_file));
      text << file.rdbuf();
    }
    if (absl::GetFlag(FLAGS_chat)) {
      longctx::v1::ChatPrompt* chat = request.mutable_messages();
      if (!absl::GetFlag(FLAGS_system).empty()) {
        longctx::v1::ChatMessage* system = chat->add_messages();
        system->set_role("system");
        system->set_content(absl::GetFlag(FLAGS_system));
      }
      longctx::v1::ChatMessage* user = chat->add_messages();
      user->set_role("user");
      user->set_content(text.str());
    } else {
      request.set_text(text.str());
    }
  }
  request.set_add_bos(absl::GetFlag(FLAGS_add_bos));
  request.set_model(absl::GetFlag(FLAGS_model));
  request.set_request_id(absl::GetFlag(FLAGS_request_id));
  auto* sampling = request.mutable_sampling();
  float value;
  uint64_t seed;
  if (!absl::GetFlag(FLAGS_temperature).empty()) {
    if (!absl::SimpleAtof(absl::GetFlag(FLAGS_temperature), &value)) {
      return Fail("--temperature must be a number");
    }
    sampling->set_temperature(value);
  }
  if (!absl::GetFlag(FLAGS_top_p).empty()) {
    if (!absl::SimpleAtof(absl::GetFlag(FLAGS_top_p), &value)) {
      return Fail("--top_p must be a number");
    }
    sampling->set_top_p(value);
  }
  if (!absl::GetFlag(FLAGS_seed).empty()) {
    if (!absl::SimpleAtoi(absl::GetFlag(FLAGS_seed), &seed)) {
      return Fail("--seed must be a non-negative integer");
    }
    sampling->set_seed(seed);
  }
  sampling->set_top_k(absl::GetFlag(FLAGS_top_k));
  auto* stopping = request.mutable_stopping();
  stopping->set_max_new_tokens(absl::GetFlag(FLAGS_max_new_tokens));
  for (const std::string& stop : absl::GetFlag(FLAGS_stop)) {
    stopping->add_stop_sequences(stop);
  }
  if (!ParseIds(absl::GetFlag(FLAGS_stop_token_ids),
                stopping->mutable_stop_token_ids())) {
    return Fail("--stop_token_ids must be comma-separated integers");
  }
  stopping->set_ignore_eos(absl::GetFlag(FLAGS_ignore_eos));
  const std::string policy = absl::GetFlag(FLAGS_cache_policy);
  if (policy == "read_write") {
    request.set_cache_policy(longctx::v1::CACHE_POLICY_READ_WRITE);
  } else if (policy == "read_only") {
    request.set_cache_policy(longctx::v1::CACHE_POLICY_READ_ONLY);
  } else if (policy == "write_only") {
    request.set_cache_policy(longctx::v1::CACHE_POLICY_WRITE_ONLY);
  } else if (policy == "disabled") {
    request.set_cache_policy(longctx::v1::CACHE_POLICY_DISABLED);
  } else {
    return Fail(
        "--cache_policy must be read_write, read_only, write_only or disabled");
  }
  request.mutable_logprobs()->set_enabled(absl::GetFlag(FLAGS_logprobs));
  request.mutable_logprobs()->set_top_logprobs(
      absl::GetFlag(FLAGS_top_logprobs));

  auto options = longctx::ClientOptionsFromFlags();
  if (!options.ok()) return Fail(std::string(options.status().message()));
  longctx::LongctxClient client(*options);
  auto last = client.Generate(
      request, absl::Seconds(absl::GetFlag(FLAGS_deadline_seconds)),
      [](const longctx::v1::GenerateResponse& message) {
        std::cout << message.text() << std::flush;
        for (const auto& lp : message.logprobs()) {
          std::cerr << "[token " << lp.token_id() << " logprob " << lp.logprob()
                    << "]";
        }
      });
  std::cout << std::endl;
  if (!last.ok()) {
    std::cerr << "generate: " << absl::StatusCodeToString(last.status().code())
              << ": " << last.status().message() << "\n";
    return 1;
  }
  const auto& usage = last->usage();
  const auto& timings = last->timings();
  std::cerr << "[" << longctx::v1::FinishReason_Name(last->finish_reason())
            << "] prompt " << usage.prompt_tokens() << " tokens ("
            << usage.cached_tokens() << " cached), generated "
            << usage.generated_tokens() << "; first token "
            << timings.time_to_first_token_seconds() << " s, total "
            << timings.total_seconds() << " s\n";
  return 0;
}
