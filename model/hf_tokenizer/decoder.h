// Decoders of tokenizer.json: turn the tokens' strings back into text
// (ByteLevel, ByteFallback, Metaspace, Replace, Fuse, Strip and Sequences of
// them). A decoder rewrites the list of token strings; the text is their
// concatenation.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_DECODER_H_
#define LONGCTX_MODEL_HF_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

// A Decoder is immutable; Decode is thread-safe.
class Decoder {
 public:
  virtual ~Decoder() = default;
  // Decode rewrites `tokens` in place. The strings may end up holding bytes
  // that are not UTF-8 (ByteLevel's bytes): the caller sanitizes the text.
  virtual void Decode(std::vector<std::string>* tokens) const = 0;
};

// MakeDecoder builds the decoder `spec` describes (nullptr for JSON null:
// the tokens' strings are the text). INVALID_ARGUMENT naming `where` and the
// type for a malformed or unsupported one (e.g. "WordPiece", "CTC").
absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& spec,
                                                     absl::string_view where);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_DECODER_H_
