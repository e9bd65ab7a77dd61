#include "services/gateway/openai/openai_api.h"

#include <algorithm>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "services/gateway/chat_request.h"

namespace longctx::openai {
namespace {

using json = nlohmann::json;

// Marks a RESOURCE_EXHAUSTED about the request's own size (HTTP 413).
constexpr absl::string_view kTooLargeUrl = "longctx.openai/request-too-large";

absl::Status Invalid(absl::string_view param, absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat(param, ": ", message));
}

const json* Field(const json& body, const char* key) {
  const auto it = body.find(key);
  return it == body.end() || it->is_null() ? nullptr : &*it;
}

absl::Status ReadNumber(const json& body, const char* key, double low,
                        double high, std::optional<double>* out) {
  const json* value = Field(body, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number()) return Invalid(key, "must be a number");
  const double number = value->get<double>();
  if (!(number >= low && number <= high)) {
    return Invalid(key, absl::StrCat("must be in [", low, ", ", high, "]"));
  }
  *out = number;
  return absl::OkStatus();
}

absl::Status ReadInt(const json& body, const char* key, int64_t low,
                     int64_t high, std::optional<int64_t>* out) {
  const json* value = Field(body, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number_integer()) return Invalid(key, "must be an integer");
  const int64_t number =
      value->is_number_unsigned()
          ? static_cast<int64_t>(std::min<uint64_t>(
                value->get<uint64_t>(), std::numeric_limits<int64_t>::max()))
          : value->get<int64_t>();
  if (number < low || number > high) {
    return Invalid(key, absl::StrCat("must be in [", low, ", ", high, "]"));
  }
  *out = number;
  return absl::OkStatus();
}

absl::Status ReadBool(const json& body, const char* key, bool* out) {
  const json* value = Field(body, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) return Invalid(key, "must be true or false");
  *out = value->get<bool>();
  return absl::OkStatus();
}

// The fields both endpoints share.
absl::Status ReadCommon(const json& body, ApiRequest* request) {
  v1::GenerateRequest& g = request->generate;
  if (const json* model = Field(body, "model")) {
    if (!model->is_string()) return Invalid("model", "must be a string");
    g.set_model(model->get<std::string>());
  }
  std::optional<double> number;
  if (absl::Status s = ReadNumber(body, "temperature", 0, 2, &number);
      !s.ok()) {
    return s;
  }
  if (number)
    g.mutable_sampling()->set_temperature(static_cast<float>(*number));
  number.reset();
  if (absl::Status s = ReadNumber(body, "top_p", 0, 1, &number); !s.ok()) {
    return s;
  }
  if (number) {
    if (*number == 0) return Invalid("top_p", "must be above 0");
    g.mutable_sampling()->set_top_p(static_cast<float>(*number));
  }
  std::optional<int64_t> integer;
  if (absl::Status s = ReadInt(body, "top_k", 0, 1 << 30, &integer); !s.ok()) {
    return s;
  }
  if (integer) g.mutable_sampling()->set_top_k(static_cast<int32_t>(*integer));
  integer.reset();
  if (absl::Status s =
          ReadInt(body, "seed", std::numeric_limits<int64_t>::min(),
                  std::numeric_limits<int64_t>::max(), &integer);
      !s.ok()) {
    return s;
  }
  if (integer) g.mutable_sampling()->set_seed(static_cast<uint64_t>(*integer));
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    integer.reset();
    if (absl::Status s = ReadInt(body, key, 1, 1 << 30, &integer); !s.ok()) {
      return s;
    }
    if (integer) {
      g.mutable_stopping()->set_max_new_tokens(static_cast<int32_t>(*integer));
    }
  }
  if (const json* stop = Field(body, "stop")) {
    if (stop->is_string()) {
      g.mutable_stopping()->add_stop_sequences(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (const json& item : *stop) {
        if (!item.is_string()) return Invalid("stop", "must hold strings");
        g.mutable_stopping()->add_stop_sequences(item.get<std::string>());
      }
    } else {
      return Invalid("stop", "must be a string or an array of strings");
    }
  }
  bool ignore_eos = false;
  if (absl::Status s = ReadBool(body, "ignore_eos", &ignore_eos); !s.ok()) {
    return s;
  }
  g.mutable_stopping()->set_ignore_eos(ignore_eos);
  if (absl::Status s = ReadBool(body, "stream", &request->stream); !s.ok()) {
    return s;
  }
  if (const json* options = Field(body, "stream_options")) {
    if (!options->is_object()) {
      return Invalid("stream_options", "must be an object");
    }
    if (absl::Status s =
            ReadBool(*options, "include_usage", &request->include_usage);
        !s.ok()) {
      return Invalid("stream_options.include_usage", "must be true or false");
    }
  }
  // What longctx does not do is refused rather than ignored.
  integer.reset();
  if (absl::Status s = ReadInt(body, "n", 1, 1, &integer); !s.ok()) {
    return Invalid("n", "only 1 choice per request is supported");
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    number.reset();
    if (absl::Status s = ReadNumber(body, key, 0, 0, &number); !s.ok()) {
      return Invalid(key, "penalties are not supported (only 0)");
    }
  }
  if (const json* bias = Field(body, "logit_bias")) {
    if (!bias->is_object() || !bias->empty()) {
      return Invalid("logit_bias", "is not supported");
    }
  }
  if (const json* user = Field(body, "user")) {
    if (!user->is_string()) return Invalid("user", "must be a string");
  }
  return absl::OkStatus();
}

absl::Status ReadCompletion(const json& body, ApiRequest* request) {
  v1::GenerateRequest& g = request->generate;
  const json* prompt = Field(body, "prompt");
  if (prompt == nullptr) return Invalid("prompt", "is required");
  // A batch of one prompt is that prompt.
  if (prompt->is_array() && prompt->size() == 1 &&
      ((*prompt)[0].is_string() || (*prompt)[0].is_array())) {
    prompt = &(*prompt)[0];
  }
  if (prompt->is_string()) {
    g.set_text(prompt->get<std::string>());
  } else if (prompt->is_array()) {
    for (const json& id : *prompt) {
      if (!id.is_number_integer()) {
        return Invalid("prompt",
                       "must be a string or token ids (batches of several "
                       "prompts are not supported)");
      }
      const int64_t value = id.get<int64_t>();
      if (value < 0 || value > std::numeric_limits<int32_t>::max()) {
        return Invalid("prompt",
                       absl::StrCat("token id ", value, " is out of range"));
      }
      g.mutable_token_ids()->add_ids(static_cast<int32_t>(value));
    }
  } else {
    return Invalid("prompt", "must be a string or an array of token ids");
  }
  bool echo = false;
  if (absl::Status s = ReadBool(body, "echo", &echo); !s.ok()) return s;
  if (echo) return Invalid("echo", "is not supported");
  if (const json* suffix = Field(body, "suffix")) {
    if (!suffix->is_string() || !suffix->get<std::string>().empty()) {
      return Invalid("suffix", "is not supported");
    }
  }
  std::optional<int64_t> integer;
  if (absl::Status s = ReadInt(body, "best_of", 1, 1, &integer); !s.ok()) {
    return Invalid("best_of", "only 1 is supported");
  }
  integer.reset();
  if (absl::Status s = ReadInt(body, "logprobs", 0, 5, &integer); !s.ok()) {
    return s;
  }
  if (integer) {
    request->logprobs = true;
    g.mutable_logprobs()->set_enabled(true);
    g.mutable_logprobs()->set_top_logprobs(static_cast<int32_t>(*integer));
  }
  // The OpenAI default when max_tokens is unset.
  if (g.stopping().max_new_tokens() == 0) {
    g.mutable_stopping()->set_max_new_tokens(16);
  }
  return absl::OkStatus();
}

absl::Status ReadMessage(const json& message, int index, v1::ChatMessage* out) {
  const std::string param = absl::StrCat("messages[", index, "]");
  if (!message.is_object()) return Invalid(param, "must be an object");
  const json* role = Field(message, "role");
  if (role == nullptr || !role->is_string()) {
    return Invalid(param + ".role", "must be a string");
  }
  out->set_role(role->get<std::string>());
  if (const json* content = Field(message, "content")) {
    if (content->is_string()) {
      out->set_content(content->get<std::string>());
    } else if (content->is_array()) {
      // Parts: text ones are joined; others (images, audio) are refused.
      std::string text;
      for (const json& part : *content) {
        const json* type = part.is_object() ? Field(part, "type") : nullptr;
        const json* part_text =
            part.is_object() ? Field(part, "text") : nullptr;
        if (type == nullptr || *type != "text" || part_text == nullptr ||
            !part_text->is_string()) {
          return Invalid(param + ".content",
                         "only text parts ({\"type\": \"text\", \"text\": "
                         "...}) are supported");
        }
        text += part_text->get<std::string>();
      }
      out->set_content(std::move(text));
    } else {
      return Invalid(param + ".content", "must be a string or text parts");
    }
  }
  for (const auto& [key, setter] :
       {std::pair<const char*, void (v1::ChatMessage::*)(const std::string&)>{
            "name", &v1::ChatMessage::set_name},
        {"tool_call_id", &v1::ChatMessage::set_tool_call_id}}) {
    if (const json* value = Field(message, key)) {
      if (!value->is_string()) {
        return Invalid(absl::StrCat(param, ".", key), "must be a string");
      }
      (out->*setter)(value->get<std::string>());
    }
  }
  if (const json* calls = Field(message, "tool_calls")) {
    if (!calls->is_array()) {
      return Invalid(param + ".tool_calls", "must be an array");
    }
    out->set_tool_calls_json(calls->dump());
  }
  return absl::OkStatus();
}

absl::Status ReadChat(const json& body, ApiRequest* request) {
  v1::ChatPrompt& chat = *request->generate.mutable_messages();
  const json* messages = Field(body, "messages");
  if (messages == nullptr || !messages->is_array() || messages->empty()) {
    return Invalid("messages", "must be a non-empty array");
  }
  for (size_t i = 0; i < messages->size(); ++i) {
    absl::Status status =
        ReadMessage((*messages)[i], static_cast<int>(i), chat.add_messages());
    if (!status.ok()) return status;
  }
  if (const json* tools = Field(body, "tools")) {
    if (!tools->is_array()) return Invalid("tools", "must be an array");
    chat.set_tools_json(tools->dump());
  }
  if (const json* choice = Field(body, "tool_choice")) {
    // Tools are offered to the model through the template; decoding is not
    // constrained, so only the model's own choice can be honoured.
    if (!choice->is_string() || (*choice != "auto" && *choice != "none")) {
      return Invalid("tool_choice", "only \"auto\" and \"none\" are supported");
    }
  }
  if (const json* format = Field(body, "response_format")) {
    const json* type = format->is_object() ? Field(*format, "type") : nullptr;
    if (type == nullptr || *type != "text") {
      return Invalid("response_format",
                     "only {\"type\": \"text\"} is supported");
    }
  }
  if (const json* variables = Field(body, "chat_template_kwargs")) {
    if (!variables->is_object()) {
      return Invalid("chat_template_kwargs", "must be an object");
    }
    chat.set_template_variables_json(variables->dump());
  }
  bool add_generation_prompt = true;
  if (absl::Status s =
          ReadBool(body, "add_generation_prompt", &add_generation_prompt);
      !s.ok()) {
    return s;
  }
  chat.set_add_generation_prompt(add_generation_prompt);
  if (absl::Status s = ReadBool(body, "logprobs", &request->logprobs);
      !s.ok()) {
    return s;
  }
  std::optional<int64_t> top;
  if (absl::Status s = ReadInt(body, "top_logprobs", 0, 20, &top); !s.ok()) {
    return s;
  }
  if (top && !request->logprobs) {
    return Invalid("top_logprobs", "needs \"logprobs\": true");
  }
  if (request->logprobs) {
    request->generate.mutable_logprobs()->set_enabled(true);
    request->generate.mutable_logprobs()->set_top_logprobs(
        static_cast<int32_t>(top.value_or(0)));
  }
  return absl::OkStatus();
}

const char* FinishReason(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_STOP_TOKEN:
    case v1::FINISH_REASON_STOP_SEQUENCE:
      return "stop";
    case v1::FINISH_REASON_LENGTH:
    case v1::FINISH_REASON_CONTEXT_FULL:
      return "length";
    default:
      return nullptr;
  }
}

json Usage(const v1::Usage& usage) {
  return {
      {"prompt_tokens", usage.prompt_tokens()},
      {"completion_tokens", usage.generated_tokens()},
      {"total_tokens", usage.prompt_tokens() + usage.generated_tokens()},
      {"prompt_tokens_details", {{"cached_tokens", usage.cached_tokens()}}}};
}

// The text of a generated token: the gateway's, else its alternative's.
std::string TokenText(const v1::TokenLogprob& logprob) {
  if (!logprob.text().empty()) return logprob.text();
  for (const v1::TopLogprob& top : logprob.top()) {
    if (top.token_id() == logprob.token_id()) return top.text();
  }
  return "";
}

json Bytes(const std::string& text) {
  json bytes = json::array();
  for (unsigned char c : text) bytes.push_back(static_cast<int>(c));
  return bytes;
}

// Logprobs of `logprobs` in the endpoint's shape; `offset` is the text
// offset of the first token (completions).
json Logprobs(
    Endpoint endpoint,
    const google::protobuf::RepeatedPtrField<v1::TokenLogprob>& logprobs,
    size_t* offset) {
  if (endpoint == Endpoint::kChatCompletions) {
    json content = json::array();
    for (const v1::TokenLogprob& lp : logprobs) {
      json top = json::array();
      for (const v1::TopLogprob& t : lp.top()) {
        top.push_back({{"token", t.text()},
                       {"logprob", t.logprob()},
                       {"bytes", Bytes(t.text())}});
      }
      const std::string text = TokenText(lp);
      content.push_back({{"token", text},
                         {"logprob", lp.logprob()},
                         {"bytes", Bytes(text)},
                         {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), token_logprobs = json::array(),
       top_logprobs = json::array(), offsets = json::array();
  for (const v1::TokenLogprob& lp : logprobs) {
    const std::string text = TokenText(lp);
    tokens.push_back(text);
    token_logprobs.push_back(lp.logprob());
    json top = json::object();
    for (const v1::TopLogprob& t : lp.top()) top[t.text()] = t.logprob();
    top_logprobs.push_back(top);
    offsets.push_back(*offset);
    *offset += text.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top_logprobs},
          {"text_offset", offsets}};
}

json Envelope(const ApiRequest& request, const ResponseInfo& info, bool chunk) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  return {
      {"id", info.id},
      {"object", chat ? (chunk ? "chat.completion.chunk" : "chat.completion")
                      : "text_completion"},
      {"created", info.created},
      {"model", info.model}};
}

std::string Event(const json& data) {
  return absl::StrCat("data: ", data.dump(), "\n\n");
}

}  // namespace

absl::StatusOr<ApiRequest> ParseRequest(Endpoint endpoint,
                                        absl::string_view body,
                                        size_t max_body_bytes) {
  if (body.size() > max_body_bytes) {
    absl::Status status = absl::ResourceExhaustedError(
        absl::StrCat("the request body has ", body.size(),
                     " bytes; the limit is ", max_body_bytes));
    status.SetPayload(kTooLargeUrl, absl::Cord("1"));
    return status;
  }
  absl::StatusOr<json> parsed = ParseClientJson(body, "request body", "object");
  if (!parsed.ok()) return parsed.status();
  ApiRequest request;
  request.endpoint = endpoint;
  absl::Status status = ReadCommon(*parsed, &request);
  if (!status.ok()) return status;
  status = endpoint == Endpoint::kChatCompletions
               ? ReadChat(*parsed, &request)
               : ReadCompletion(*parsed, &request);
  if (!status.ok()) return status;
  return request;
}

json CompletionResponse(const ApiRequest& request, const ResponseInfo& info,
                        const std::vector<v1::GenerateResponse>& messages) {
  std::string text;
  google::protobuf::RepeatedPtrField<v1::TokenLogprob> logprobs;
  for (const v1::GenerateResponse& message : messages) {
    text += message.text();
    for (const v1::TokenLogprob& lp : message.logprobs()) *logprobs.Add() = lp;
  }
  const v1::GenerateResponse* last =
      messages.empty() ? nullptr : &messages.back();
  const char* reason =
      last != nullptr ? FinishReason(last->finish_reason()) : nullptr;
  size_t offset = 0;
  json logprobs_json = request.logprobs
                           ? Logprobs(request.endpoint, logprobs, &offset)
                           : json(nullptr);
  json choice = {
      {"index", 0},
      {"logprobs", logprobs_json},
      {"finish_reason", reason != nullptr ? json(reason) : json(nullptr)}};
  if (request.endpoint == Endpoint::kChatCompletions) {
    choice["message"] = {{"role", "assistant"}, {"content", text}};
  } else {
    choice["text"] = text;
  }
  json response = Envelope(request, info, /*chunk=*/false);
  response["choices"] = json::array({choice});
  response["usage"] = last != nullptr ? Usage(last->usage()) : json(nullptr);
  return response;
}

std::string ChunkEvents(const ApiRequest& request, const ResponseInfo& info,
                        const v1::GenerateResponse& message, bool first) {
  const bool chat = request.endpoint == Endpoint::kChatCompletions;
  std::string events;
  const auto chunk = [&](json choice) {
    json data = Envelope(request, info, /*chunk=*/true);
    data["choices"] = json::array({std::move(choice)});
    if (request.include_usage) data["usage"] = nullptr;
    events += Event(data);
  };
  if (chat && first) {
    chunk({{"index", 0},
           {"delta", {{"role", "assistant"}, {"content", ""}}},
           {"logprobs", nullptr},
           {"finish_reason", nullptr}});
  }
  if (!message.text().empty() || !message.logprobs().empty()) {
    size_t offset = 0;
    json logprobs = request.logprobs ? Logprobs(request.endpoint,
                                                message.logprobs(), &offset)
                                     : json(nullptr);
    json choice = {
        {"index", 0}, {"logprobs", logprobs}, {"finish_reason", nullptr}};
    if (chat) {
      choice["delta"] = {{"content", message.text()}};
    } else {
      choice["text"] = message.text();
    }
    chunk(std::move(choice));
  }
  if (const char* reason = FinishReason(message.finish_reason())) {
    json choice = {
        {"index", 0}, {"logprobs", nullptr}, {"finish_reason", reason}};
    if (chat) {
      choice["delta"] = json::object();
    } else {
      choice["text"] = "";
    }
    chunk(std::move(choice));
    if (request.include_usage) {
      json data = Envelope(request, info, /*chunk=*/true);
      data["choices"] = json::array();
      data["usage"] = Usage(message.usage());
      events += Event(data);
    }
  }
  return events;
}

ApiError ErrorFor(const absl::Status& status) {
  ApiError error;
  const char* type = "server_error";
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      error.http_status = 400;
      type = "invalid_request_error";
      break;
    case absl::StatusCode::kUnauthenticated:
      error.http_status = 401;
      type = "authentication_error";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.http_status = 403;
      type = "permission_error";
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      type = "not_found_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      if (status.GetPayload(kTooLargeUrl).has_value()) {
        error.http_status = 413;
        type = "invalid_request_error";
      } else {
        error.http_status = 429;
        type = "rate_limit_error";
      }
      break;
    case absl::StatusCode::kUnavailable:
      error.http_status = 503;
      type = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      type = "timeout";
      break;
    case absl::StatusCode::kCancelled:
      error.http_status = 499;
      type = "cancelled";
      break;
    default:
      error.http_status = 500;
      break;
  }
  std::string message(status.message());
  // A parameter error ("param: message") names the OpenAI "param".
  json param = nullptr;
  if (status.code() == absl::StatusCode::kInvalidArgument) {
    const size_t colon = message.find(": ");
    if (colon != std::string::npos && colon < 64 &&
        message.find(' ') >= colon) {
      param = message.substr(0, colon);
    }
  }
  error.body = {{"error",
                 {{"message", message},
                  {"type", type},
                  {"param", param},
                  {"code", nullptr}}}};
  return error;
}

}  // namespace longctx::openai
