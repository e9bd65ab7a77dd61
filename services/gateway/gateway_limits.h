// GatewayLimits: the per-request limits the gateway enforces, each from a flag.
#ifndef LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_
#define LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_

namespace longctx {

struct GatewayLimits {
  // Longest prompt, in tokens (--max_prompt_tokens). Default: 131072.
  int max_prompt_tokens = 131072;
  // Most new tokens per request (--max_new_tokens). Default: 4096.
  int max_new_tokens = 4096;
  // New tokens when a request does not say (--default_max_new_tokens). Default:
  // 256.
  int default_max_new_tokens = 256;
  // Longest text accepted by Tokenize or Generate, in bytes (--max_text_bytes).
  // Default: 16 MiB.
  int max_text_bytes = 16 << 20;
  // Most Generate streams at once; more get RESOURCE_EXHAUSTED
  // (--max_concurrent_requests). Default: 256.
  int max_concurrent_requests = 256;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_GATEWAY_LIMITS_H_
