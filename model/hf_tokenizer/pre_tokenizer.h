// Pre-tokenizers of tokenizer.json: split normalized text into words before
// the BPE model sees them, and rewrite the words (ByteLevel's byte alphabet,
// Metaspace's "▁"). Split (with the families' regular expressions and every
// delimiter behavior), ByteLevel, Metaspace, Digits, Punctuation,
// Whitespace, WhitespaceSplit, CharDelimiterSplit and Sequences of them.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_PRE_TOKENIZER_H_
#define LONGCTX_MODEL_HF_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

// One word of the text.
struct PreToken {
  std::string text;  // Valid UTF-8.
  // The word starts the whole input (Metaspace's prepend_scheme "first"
  // adds its "▁" only there, not after an added token).
  bool at_start = false;
};

// A PreTokenizer is immutable; PreTokenize is thread-safe.
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // PreTokenize replaces `words` by their splits, in order; empty words are
  // dropped. INTERNAL when a regular expression fails on the input.
  virtual absl::Status PreTokenize(std::vector<PreToken>* words) const = 0;
};

// MakePreTokenizer builds the pre-tokenizer `spec` describes (nullptr for
// JSON null: the text is one word). INVALID_ARGUMENT naming `where` and the
// type for a malformed or unsupported one.
absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(
    const nlohmann::json& spec, absl::string_view where);

// How a split treats the delimiters it finds (tokenizers'
// SplitDelimiterBehavior).
enum class SplitBehavior {
  kRemoved,             // Dropped.
  kIsolated,            // Words of their own.
  kMergedWithPrevious,  // Appended to the word before.
  kMergedWithNext,      // Prepended to the word after.
  kContiguous,          // Adjacent delimiters form one word.
};

// SplitRanges splits [0, size) at the delimiter ranges `matches` (sorted,
// not overlapping) as `behavior` says, with the roles of delimiters and the
// rest swapped when `invert`. Returns the [start, end) of the non-empty words.
std::vector<std::pair<size_t, size_t>> SplitRanges(
    size_t size, const std::vector<std::pair<size_t, size_t>>& matches,
    SplitBehavior behavior, bool invert);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_PRE_TOKENIZER_H_
