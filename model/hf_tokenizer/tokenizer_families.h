// Tokenizers laid out like the Hub families' tokenizer.json files, with BPE
// merges learned from a given text, and a chat template in each family's
// format in tokenizer_config.json: what make_tiny_model writes into a model
// folder, and what the tests compare with the reference implementations.
//
//   llama3  byte-level BPE: Split with Llama 3's pattern, then ByteLevel;
//           ignore_merges; "<|begin_of_text|>" added by TemplateProcessing;
//           "<|eot_id|>" and the header tokens.
//   qwen2   byte-level BPE: NFC, Split with Qwen2's pattern, ByteLevel;
//           "<|im_start|>", "<|im_end|>", "<|endoftext|>" and the non-special
//           "<think>", "</think>".
//   mistral SentencePiece-style BPE: Metaspace (prepend_scheme "first"),
//           byte_fallback with "<0x00>".."<0xFF>", "<unk>", "<s>", "</s>",
//           "[INST]", "[/INST]"; decoder Replace, ByteFallback, Fuse, Strip.
//   llama2  the same model with the older layout: Prepend and Replace
//           normalizers, no pre-tokenizer.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_TOKENIZER_FAMILIES_H_
#define LONGCTX_MODEL_HF_TOKENIZER_TOKENIZER_FAMILIES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace longctx {

enum class TokenizerFamily { kLlama3, kQwen2, kMistral, kLlama2 };

// ParseTokenizerFamily maps "llama3", "qwen2", "mistral", "llama2";
// INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<TokenizerFamily> ParseTokenizerFamily(absl::string_view name);

struct FamilyTokenizer {
  nlohmann::json tokenizer;         // tokenizer.json
  nlohmann::json tokenizer_config;  // tokenizer_config.json
  int id_limit = 0;                 // One past the largest id.
  int bos_id = -1;                  // -1: the family adds none.
  std::vector<int> eos_ids;         // What ends a chat turn or a text.
};

// MakeFamilyTokenizer learns up to `merges` merges (most frequent pair
// first; fewer when no pair occurs twice) from `text`, pre-tokenized the
// family's way, and lays the result out as the family does. Deterministic.
// INVALID_ARGUMENT for merges outside [0, 100000].
absl::StatusOr<FamilyTokenizer> MakeFamilyTokenizer(TokenizerFamily family,
                                                    int merges,
                                                    absl::string_view text);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_TOKENIZER_FAMILIES_H_
