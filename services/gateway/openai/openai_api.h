// The OpenAI-compatible API's messages, mapped to and from longctx's: a
// /v1/completions or /v1/chat/completions request body becomes a
// GenerateRequest (so the gateway serves it on the same path as gRPC
// requests), and the Generate stream's messages become the JSON the OpenAI
// SDKs expect (whole responses, or server-sent-event chunks), errors
// included. No I/O: the HTTP listener uses these.
#ifndef LONGCTX_SERVICES_GATEWAY_OPENAI_OPENAI_API_H_
#define LONGCTX_SERVICES_GATEWAY_OPENAI_OPENAI_API_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "proto/longctx.pb.h"

namespace longctx::openai {

enum class Endpoint { kCompletions, kChatCompletions };

// A parsed request: the GenerateRequest to run and how to answer it.
struct ApiRequest {
  Endpoint endpoint = Endpoint::kCompletions;
  v1::GenerateRequest generate;
  bool stream = false;
  // stream_options.include_usage: a last chunk with the usage.
  bool include_usage = false;
  // Completions: "logprobs": N asks for N alternatives (0..5) per token.
  // Chat: "logprobs": true, "top_logprobs": N (0..20).
  bool logprobs = false;
};

// ParseRequest maps a request body. INVALID_ARGUMENT naming the field (as
// the OpenAI API's "param") for malformed JSON, wrong types, values out of
// range, and what longctx does not do: n or best_of other than 1, echo,
// suffix, logit_bias, non-zero presence / frequency penalties, a batch of
// several prompts, a response_format other than text. Unknown fields are
// ignored, as the OpenAI API does. `max_body_bytes` bounds the body before
// it is parsed (RESOURCE_EXHAUSTED).
absl::StatusOr<ApiRequest> ParseRequest(Endpoint endpoint,
                                        absl::string_view body,
                                        size_t max_body_bytes);

// What a whole (non-streamed) response needs besides the Generate stream.
struct ResponseInfo {
  std::string id;       // "cmpl-..." / "chatcmpl-..." (from the request id).
  std::string model;    // The served model's name.
  int64_t created = 0;  // Unix seconds.
};

// CompletionResponse builds the JSON of a whole response from the stream's
// messages (their text and logprobs joined; usage and finish reason from the
// last).
nlohmann::json CompletionResponse(
    const ApiRequest& request, const ResponseInfo& info,
    const std::vector<v1::GenerateResponse>& messages);

// ChunkEvents returns the server-sent events ("data: {...}\n\n") for one
// Generate message of a streamed response; `first` for the stream's first
// (chat: it carries the assistant role). The final message gives the chunk
// with the finish reason and, with include_usage, one with the usage.
std::string ChunkEvents(const ApiRequest& request, const ResponseInfo& info,
                        const v1::GenerateResponse& message, bool first);

// The event that ends a stream.
inline constexpr absl::string_view kDoneEvent = "data: [DONE]\n\n";

// An error in the OpenAI shape, {"error": {"message", "type", "param",
// "code"}}, with its HTTP status.
struct ApiError {
  int http_status = 500;
  nlohmann::json body;
};

// ErrorFor maps a status (the gRPC path's, or ParseRequest's): INVALID_ARGUMENT
// and FAILED_PRECONDITION 400, UNAUTHENTICATED 401, PERMISSION_DENIED 403,
// NOT_FOUND 404, RESOURCE_EXHAUSTED 429 (413 when it names the request's size:
// max_body_bytes), UNAVAILABLE 503, DEADLINE_EXCEEDED 504, CANCELLED 499,
// others 500. The message is the status's; never a stack trace.
ApiError ErrorFor(const absl::Status& status);

}  // namespace longctx::openai

#endif  // LONGCTX_SERVICES_GATEWAY_OPENAI_OPENAI_API_H_
