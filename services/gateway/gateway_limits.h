// GatewayLimits: the per-request limits the gateway enforces, each from a flag.
#ifndef LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_
#define LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_

#include <algorithm>
#include <cstdint>

#include "absl/time/time.h"

namespace longctx {

struct GatewayLimits {
  // Longest prompt, in tokens (--max_prompt_tokens). Default: 131072.
  int max_prompt_tokens = 131072;
  // Most new tokens per request (--max_new_tokens). Default: 4096.
  int max_new_tokens = 4096;
  // New tokens when a request does not say (--default_max_new_tokens). Default:
  // 256.
  int default_max_new_tokens = 256;
  // Longest text accepted by Tokenize or Generate, in bytes (--max_text_bytes;
  // the flag's default is DefaultMaxTextBytes). Default: 1 MiB. A chat
  // prompt's strings count together, and the prompt its template renders
  // may be at most this long too.
  int max_text_bytes = 1 << 20;
  // Most turns of a chat prompt (--max_chat_messages). Default: 4096.
  int max_chat_messages = 4096;
  // Refuse chat messages whose text holds a special token's string (e.g.
  // "<|im_end|>"), which would otherwise become that token: a user closing
  // their own turn (--refuse_special_tokens_in_messages). Default: false,
  // as the Hugging Face libraries.
  bool refuse_special_tokens_in_messages = false;
  // Most Generate streams and Tokenize calls at once; more get
  // RESOURCE_EXHAUSTED (--max_concurrent_requests). Default: 256.
  int max_concurrent_requests = 256;
  // The same for one tenant of the tokens file; 0: no limit of its own
  // (--max_concurrent_requests_per_tenant). Default: 64.
  int max_concurrent_requests_per_tenant = 64;
  // A Generate stream whose client has not taken a message for this long is
  // cancelled, freeing its slot and its worker sequence
  // (--stream_write_timeout). Default: 60 s.
  absl::Duration stream_write_timeout = absl::Seconds(60);
};

// Bytes of text allowed per prompt token when --max_text_bytes is not set:
// far more than any tokenizer's average (about 4 for English, 3 to 6 for
// Chinese or code).
inline constexpr int kTextBytesPerPromptToken = 8;
// Bytes of a request besides its text or token ids (sampling, stop
// sequences, request id, ...), bounded by the protocol's limits.
inline constexpr int kRequestOverheadBytes = 64 << 10;
// Bytes of one chat message on the wire besides its strings (tags and
// lengths of its five fields and of the message).
inline constexpr int kChatMessageOverheadBytes = 32;

// DefaultMaxTextBytes is --max_text_bytes when the flag is 0:
// kTextBytesPerPromptToken per --max_prompt_tokens.
inline int DefaultMaxTextBytes(int max_prompt_tokens) {
  return static_cast<int>(std::min<int64_t>(
      int64_t{kTextBytesPerPromptToken} * max_prompt_tokens, 1 << 30));
}

// ReceiveLimitBytes is the gateway's gRPC receive limit when
// --max_message_bytes is 0: the larger of the longest text (or chat prompt,
// with its messages' framing) and the longest prompt as token ids (5 bytes
// each at most on the wire), plus the rest of a request. gRPC applies it to a
// compressed message after decompression, so a request small on the wire cannot
// expand past it either.
inline int ReceiveLimitBytes(const GatewayLimits& limits) {
  return static_cast<int>(std::min<int64_t>(
      std::max<int64_t>(
          limits.max_text_bytes +
              int64_t{kChatMessageOverheadBytes} * limits.max_chat_messages,
          int64_t{5} * limits.max_prompt_tokens) +
          kRequestOverheadBytes,
      int64_t{1} << 30));
}

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_
