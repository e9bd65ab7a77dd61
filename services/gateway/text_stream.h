// TextStream: the interface through which a Generate call turns generated
// token ids into text (GatewayModel implements it with the model's
// detokenizer; GenerateCall uses it).
#ifndef LONGCTX_SERVICES_GATEWAY_TEXT_STREAM_H_
#define LONGCTX_SERVICES_GATEWAY_TEXT_STREAM_H_

#include <cstdint>
#include <string>

#include "absl/types/span.h"

namespace longctx {

// TextStream turns a request's generated token ids into text as they arrive.
// Push returns the newly completed text (never a partial UTF-8 character);
// Flush returns what is left at the end. TokenText renders one token on its own
// (for logprobs).
class TextStream {
 public:
  virtual ~TextStream() = default;
  virtual std::string Push(absl::Span<const int32_t> ids) = 0;
  virtual std::string Flush() = 0;
  virtual std::string TokenText(int32_t id) = 0;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_TEXT_STREAM_H_
