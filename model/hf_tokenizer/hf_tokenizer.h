// HfTokenizer: a Hugging Face tokenizer.json (the "tokenizers" library's
// format) — added tokens, normalizer, pre-tokenizer, a BPE model,
// post-processor (TemplateProcessing) and decoder — as the byte-level BPE
// families (GPT-2, Llama 3, Qwen2) and the SentencePiece-style BPE families
// (Llama 2, Mistral: Metaspace, byte_fallback) write it. Anything else fails
// at load with a message naming the component.
//
// Encoding follows the Rust library: the raw text is split at added tokens
// (leftmost-longest); each piece between them is normalized, split at the
// "normalized" added tokens, pre-tokenized into words, and each word is
// tokenized by the model.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_HF_TOKENIZER_H_
#define LONGCTX_MODEL_HF_TOKENIZER_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/hf_tokenizer/added_vocabulary.h"
#include "model/hf_tokenizer/bpe_model.h"
#include "model/hf_tokenizer/decoder.h"
#include "model/hf_tokenizer/normalizer.h"
#include "model/hf_tokenizer/pre_tokenizer.h"
#include "nlohmann/json.hpp"

namespace longctx {

// HfTokenizer is immutable after creation; every method is thread-safe.
class HfTokenizer {
 public:
  // FromJson builds the tokenizer of a parsed tokenizer.json.
  // INVALID_ARGUMENT naming the component ("pre_tokenizer.pretokenizers[0]:
  // pre-tokenizer \"BertPreTokenizer\" is not supported by longctx") when a
  // part is malformed or unsupported.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> FromJson(
      const nlohmann::json& spec);

  // Encode returns the ids of `text` (any bytes: sequences that are not
  // UTF-8 count as U+FFFD, as a UTF-8 decoder would make them). With
  // `add_special_tokens`, the post-processor's tokens (e.g. "<s>") surround
  // them. Added tokens in the text are always recognized. INTERNAL when a
  // regular expression gives up on the input.
  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              bool add_special_tokens) const;

  // Decode returns the text of `ids` (ids the tokenizer does not know
  // render as nothing; special added tokens too when `skip_special_tokens`).
  // The result may hold bytes that are not UTF-8 (a byte-level token that is
  // part of a character): the caller sanitizes.
  std::string Decode(absl::Span<const int32_t> ids,
                     bool skip_special_tokens) const;

  // One past the largest id of the model's vocab and the added tokens.
  int32_t id_limit() const { return id_limit_; }
  // TokenToId returns the id of a token's string (added tokens first).
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // IdToToken returns the string of `id` (an added token's content, or the
  // model's vocab entry), or nullptr when it has none.
  const std::string* IdToToken(int32_t id) const;
  // IsSpecial reports whether `id` is a special added token.
  bool IsSpecial(int32_t id) const;
  const AddedVocabulary& added_tokens() const { return added_; }
  const BpeModel& model() const { return *model_; }
  // The ids the post-processor puts before and after a single sequence.
  const std::vector<int32_t>& special_prefix() const { return prefix_; }
  const std::vector<int32_t>& special_suffix() const { return suffix_; }

 private:
  struct WordCache;

  HfTokenizer() = default;

  // EncodeSegment appends the ids of text between added tokens.
  absl::Status EncodeSegment(absl::string_view text, bool at_start,
                             WordCache* cache, std::vector<int32_t>* ids) const;
  absl::Status EncodeWords(absl::string_view text, bool at_start,
                           WordCache* cache, std::vector<int32_t>* ids) const;
  // EncodeWord appends the ids of one word (or independent part of one),
  // through the cache.
  void EncodeWord(absl::string_view word, WordCache* cache,
                  std::vector<int32_t>* ids) const;

  AddedVocabulary added_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Decoder> decoder_;
  // Whether added tokens bypass the decoder (a top-level ByteLevel decoder:
  // the text between them is decoded on its own).
  bool added_bypass_decoder_ = false;
  std::vector<int32_t> prefix_, suffix_;
  int32_t id_limit_ = 0;
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_HF_TOKENIZER_H_
