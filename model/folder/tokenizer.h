// Tokenizers: text to token ids and back, and incremental detokenization of
// generated ids into complete UTF-8 text.
//
// Three kinds: ByteTokenizer (the tiny model's: ids 0..255 are the bytes),
// SentencePieceTokenizer (a folder's tokenizer.model) and JsonTokenizer (a
// folder's Hugging Face tokenizer.json). LoadTokenizer picks the one a model
// folder declares.
#ifndef LONGCTX_MODEL_FOLDER_TOKENIZER_H_
#define LONGCTX_MODEL_FOLDER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "model/folder/model_config.h"
#include "nlohmann/json.hpp"

namespace longctx {

class IncrementalDetokenizer;

// Tokenizer is immutable after creation; every method is thread-safe.
class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // What kind of tokenizer this is: "byte", "sentencepiece" or
  // "tokenizer.json" (reported in ModelInfo).
  virtual absl::string_view kind() const = 0;

  // The model's vocabulary size: valid ids are [0, vocab_size()). It may
  // exceed the tokenizer's own pieces (padded embeddings); those extra ids
  // decode to nothing.
  virtual int vocab_size() const = 0;
  // The id that starts a sequence, if the model has one.
  virtual std::optional<int32_t> bos_id() const = 0;
  // The ids that end generation (possibly several, possibly none).
  virtual const std::vector<int32_t>& eos_ids() const = 0;

  // Encode tokenizes `text` (any bytes) without adding special tokens: the
  // caller prepends bos_id() when the model wants it. INTERNAL if the
  // tokenizer library fails.
  virtual absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const = 0;

  // Decode returns the text of `ids`: valid UTF-8 (bytes that form no
  // character become U+FFFD), special tokens (bos, eos, control pieces) and
  // unused ids render as nothing. INVALID_ARGUMENT naming the id when one is
  // outside [0, vocab_size()).
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids) const;

  // TokenText renders one token on its own, for display (e.g. the
  // alternatives of log-probabilities): valid UTF-8; a byte that is not a
  // whole character reads "<0xE2>", special tokens their names ("<s>",
  // "</s>"), ids the tokenizer does not use "<unused:ID>", ids outside the
  // vocabulary "<invalid:ID>".
  virtual std::string TokenText(int32_t id) const = 0;

  // FindSpecialToken returns the text of the first special token written in
  // `text` (e.g. "<|im_end|>", which Encode turns into that token's id), or
  // nullopt when there is none. Tokenizers that never read special tokens
  // from text (byte, SentencePiece) find none.
  virtual std::optional<std::string> FindSpecialToken(
      absl::string_view text) const {
    return std::nullopt;
  }

  // NewDetokenizer starts the incremental decoding of one sequence. The
  // tokenizer must outlive it.
  std::unique_ptr<IncrementalDetokenizer> NewDetokenizer() const;

 protected:
  friend class IncrementalDetokenizer;

  // DecodeRaw decodes ids already checked to be in [0, vocab_size()), with
  // specials dropped. The result may hold bytes that are not UTF-8 (a byte
  // token) or U+FFFD where the library replaced such bytes.
  virtual std::string DecodeRaw(absl::Span<const int32_t> ids) const = 0;
};

// IncrementalDetokenizer turns the ids of one sequence, as they are
// generated, into text. Push returns only complete UTF-8 characters: a
// character whose bytes span several tokens comes out when its last byte
// arrives. Not thread-safe (one per sequence).
//
// It decodes a short window of recent ids rather than one id at a time, so
// that tokenizers whose pieces depend on their neighbours (SentencePiece's
// leading space) give the same text as Decode of the whole sequence.
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer);

  // Push appends `ids` and returns the text they completed (maybe empty).
  // Ids outside the vocabulary render as U+FFFD.
  std::string Push(absl::Span<const int32_t> ids);

  // Flush returns the text still held back (an incomplete character becomes
  // U+FFFD) and starts over, as for a new sequence.
  std::string Flush();

 private:
  std::string DecodeWindow() const;
  // RestartWindow cuts the window back to its last tokens once it has grown
  // past its size; `text` is DecodeWindow() and its last `tail` bytes are
  // held back.
  void RestartWindow(absl::string_view text, size_t tail);

  const Tokenizer* tokenizer_;
  // Recent ids; -1 marks an id outside the vocabulary.
  std::vector<int32_t> window_;
  // Bytes at the start of DecodeWindow() already returned (or, after the
  // window moved, that belong to context tokens).
  size_t emitted_ = 0;
  // Tokens pushed since the held-back text (an incomplete character) began;
  // 0 when nothing is held.
  int held_tokens_ = 0;
};

// ByteTokenizer: ids 0..255 are the bytes of the text; bos and eos come from
// the config (256 and 257 in models made by make_tiny_model); other ids below
// vocab_size decode to nothing.
class ByteTokenizer : public Tokenizer {
 public:
  // Create checks that vocab_size >= 256 and that the special ids are not
  // bytes (>= 256); INVALID_ARGUMENT otherwise.
  static absl::StatusOr<std::unique_ptr<ByteTokenizer>> Create(
      const ModelConfig& config);

  absl::string_view kind() const override { return "byte"; }
  int vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const override { return eos_ids_; }
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string TokenText(int32_t id) const override;

 protected:
  std::string DecodeRaw(absl::Span<const int32_t> ids) const override;

 private:
  ByteTokenizer() = default;

  int vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

class SentencePieceModel;

// SentencePieceTokenizer: a SentencePiece tokenizer.model (Llama 2, Mistral,
// ...). Special ids come from the config, else from the SentencePiece model.
class SentencePieceTokenizer : public Tokenizer {
 public:
  // Load reads `path`. NOT_FOUND when it does not exist, INVALID_ARGUMENT
  // when the library cannot read it or when it has more pieces than
  // config.vocab_size.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(
      const std::string& path, const ModelConfig& config);
  ~SentencePieceTokenizer() override;

  absl::string_view kind() const override { return "sentencepiece"; }
  int vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const override { return eos_ids_; }
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string TokenText(int32_t id) const override;

 protected:
  std::string DecodeRaw(absl::Span<const int32_t> ids) const override;

 private:
  SentencePieceTokenizer() = default;

  std::unique_ptr<SentencePieceModel> model_;
  std::string path_;
  int vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

class HfTokenizer;

// JsonTokenizer: a Hugging Face tokenizer.json (Llama 3, Qwen2, Mistral, ...;
// see model/hf_tokenizer/hf_tokenizer.h for what it supports). Encode adds no
// special tokens but recognizes added tokens written in the text (as the
// Hugging Face libraries do). Special ids come from the config, else from
// tokenizer_config.json's bos_token / eos_token.
class JsonTokenizer : public Tokenizer {
 public:
  // Load reads `path` (and tokenizer_config.json beside it, when present).
  // NOT_FOUND when it does not exist; INVALID_ARGUMENT naming the file and
  // the component when it is malformed or uses what longctx does not
  // support, or when its ids reach past config.vocab_size.
  static absl::StatusOr<std::unique_ptr<JsonTokenizer>> Load(
      const std::string& path, const ModelConfig& config);
  ~JsonTokenizer() override;

  absl::string_view kind() const override { return "tokenizer.json"; }
  int vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> bos_id() const override { return bos_id_; }
  const std::vector<int32_t>& eos_ids() const override { return eos_ids_; }
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string TokenText(int32_t id) const override;
  std::optional<std::string> FindSpecialToken(
      absl::string_view text) const override;
  const HfTokenizer& hf() const { return *tokenizer_; }

 protected:
  std::string DecodeRaw(absl::Span<const int32_t> ids) const override;

 private:
  JsonTokenizer() = default;
  bool IsControl(int32_t id) const;

  std::unique_ptr<HfTokenizer> tokenizer_;
  std::string path_;
  int vocab_size_ = 0;
  std::optional<int32_t> bos_id_;
  std::vector<int32_t> eos_ids_;
};

// The tokenizer_class that marks a folder as using the byte tokenizer, in its
// tokenizer_config.json (make_tiny_model writes it).
inline constexpr absl::string_view kByteTokenizerClass = "LongctxByteTokenizer";

// TokenizerConfigSpecialToken returns the text of tokenizer_config.json's
// special token `key` ("bos_token", "eos_token", ...): a string, or an
// object with "content"; nullopt otherwise.
std::optional<std::string> TokenizerConfigSpecialToken(
    const nlohmann::json& config, const char* key);

// LoadTokenizer returns the tokenizer of a model folder: tokenizer.json when
// it has one (what the Hugging Face libraries prefer too), else SentencePiece
// when it has tokenizer.model, else the byte tokenizer when
// tokenizer_config.json says "tokenizer_class": "LongctxByteTokenizer".
// NOT_FOUND otherwise (such models take token ids); the errors of the
// loaders.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir, const ModelConfig& config);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_TOKENIZER_H_
