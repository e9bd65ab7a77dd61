// BpeModel: the "BPE" model of tokenizer.json. A word becomes the vocabulary
// ids of its characters (or, with byte_fallback, of the bytes "<0xXX>" of a
// character the vocabulary lacks; else the unknown token), which are then
// merged pair by pair, always the pair of lowest merge rank first (the
// leftmost among equals), until no listed merge applies.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_BPE_MODEL_H_
#define LONGCTX_MODEL_HF_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

// BpeModel is immutable after Create; Tokenize is thread-safe.
class BpeModel {
 public:
  // Create reads the model object `spec` (type "BPE": vocab, merges as "a b"
  // strings or ["a", "b"] pairs, unk_token, byte_fallback, fuse_unk,
  // ignore_merges, continuing_subword_prefix, end_of_word_suffix).
  // INVALID_ARGUMENT naming the problem: another model type (WordPiece,
  // Unigram), dropout, a merge whose parts or result are not in the vocab,
  // duplicate ids.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const nlohmann::json& spec, absl::string_view where);

  // Tokenize appends the ids of `word` (valid UTF-8, non-empty) to `ids`.
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const;

  // SplitIndependent appends to `parts` pieces of `word` whose ids,
  // tokenized one by one, are exactly the word's: the word is cut before
  // each "▁" that follows another character, when no vocab entry holds a
  // "▁" after another character (so no merge can cross such a cut: the
  // SentencePiece-style vocabularies, whose Metaspace layout makes a whole
  // text one word). Otherwise the word is one part.
  void SplitIndependent(absl::string_view word,
                        std::vector<absl::string_view>* parts) const;

  // TokenToId returns the id of a vocabulary entry.
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // IdToToken returns the entry of `id`; nullptr when the vocab has none.
  const std::string* IdToToken(int32_t id) const;
  // One past the largest id in the vocab.
  int32_t id_limit() const { return static_cast<int32_t>(tokens_.size()); }
  bool byte_fallback() const { return byte_fallback_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t PairKey(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  BpeModel() = default;
  // AddCharacterIds appends the initial ids of `word`'s characters.
  void AddCharacterIds(absl::string_view word, std::vector<int32_t>* ids) const;
  // MergeAll applies the merges to `ids` in place.
  void MergeAll(std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> tokens_;  // By id; empty where no entry.
  std::vector<bool> has_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<int32_t> unk_id_;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  // Whether SplitIndependent may cut before "▁".
  bool cut_before_space_ = false;
  int32_t byte_ids_[256];  // "<0xXX>" ids for byte_fallback; -1 if absent.
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_BPE_MODEL_H_
