// AddedVocabulary: tokenizer.json's "added_tokens" (special tokens such as
// "<|eot_id|>", and extra words), found in the text before the model runs:
// leftmost-longest matches, with each token's single_word, lstrip and rstrip.
// Tokens marked "normalized" are looked for in the normalized text, the
// others in the raw text.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_ADDED_VOCABULARY_H_
#define LONGCTX_MODEL_HF_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
};

// AddedVocabulary is immutable after Create; its methods are thread-safe.
class AddedVocabulary {
 public:
  // Create reads the "added_tokens" array (null or absent: none).
  // INVALID_ARGUMENT for a malformed entry, an empty or non-UTF-8 content,
  // or two entries with one id or one content.
  static absl::StatusOr<AddedVocabulary> Create(const nlohmann::json& spec,
                                                absl::string_view where);

  // Split walks `text`, calling on_text(piece) for the text between matches
  // of tokens whose `normalized` flag equals `normalized`, and
  // on_token(id) for each match, in order. lstrip / rstrip matches take the
  // whitespace beside them.
  void Split(absl::string_view text, bool normalized,
             absl::FunctionRef<void(absl::string_view)> on_text,
             absl::FunctionRef<void(int32_t)> on_token) const;

  // Find returns the token with `id`, or nullptr.
  const AddedToken* Find(int32_t id) const;
  // FindContent returns the token whose content is `content`, or nullptr.
  const AddedToken* FindContent(absl::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }
  bool HasNormalized() const { return !tries_[1].nodes.empty(); }

 private:
  // A byte trie over the contents, one per `normalized` value.
  struct Trie {
    struct Node {
      absl::flat_hash_map<unsigned char, int32_t> children;
      int32_t token = -1;  // Index into tokens_ of a content ending here.
    };
    std::vector<Node> nodes;  // nodes[0] is the root, when any.
    bool first_byte[256] = {};
  };

  void Insert(Trie* trie, int32_t index);

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, int32_t> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  Trie tries_[2];  // [0]: not normalized, [1]: normalized.
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_ADDED_VOCABULARY_H_
