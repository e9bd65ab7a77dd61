// StopMatcher: finds stop sequences in streamed text. Text that could still be
// the start of a stop sequence is held back until the next piece decides it, so
// a stop string split across messages is never sent to the client.
#ifndef LONGCTX_SERVICES_GATEWAY_STOP_MATCHER_H_
#define LONGCTX_SERVICES_GATEWAY_STOP_MATCHER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace longctx {

// StopMatcher is not thread-safe (one per request).
class StopMatcher {
 public:
  // `stops` are the stop sequences; empty strings are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  // Push appends generated text and returns the text that is now safe to send.
  // Once a stop sequence appears, stopped() is true, the returned text ends
  // right before it, and later pushes return nothing.
  std::string Push(absl::string_view text);

  // Flush returns the held-back text at the end of generation (nothing if
  // stopped).
  std::string Flush();

  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
  std::string pending_;  // Text not yet returned.
  bool stopped_ = false;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_STOP_MATCHER_H_
