// Fuzz target: tokenizer.json encoding and decoding (model/hf_tokenizer) in
// the four layouts make_tiny_model writes (tokenizer_families.h), with merges
// learned from the shipped training text.
//
// Input: one byte that picks the layout and whether special tokens are
// added, then the text (any bytes).
//
// Properties checked: Encode never fails on any bytes; every id is one the
// tokenizer knows; Decode of the ids is, once sanitized, the text with its
// invalid UTF-8 replaced by U+FFFD (exactly, for the byte-level layout
// without a normalizer; for the SentencePiece-style ones, as long as the
// text has no leading space, no "▁" (their space) and no added-token
// strings; qwen2's NFC may change the text);
// decoding never yields invalid UTF-8 after sanitizing; add_special_tokens
// only wraps the same ids.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz/fuzz_check.h"
#include "model/hf_tokenizer/hf_tokenizer.h"
#include "model/hf_tokenizer/tokenizer_families.h"
#include "model/hf_tokenizer/training_text.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

const HfTokenizer& Family(int index) {
  static const std::vector<std::unique_ptr<HfTokenizer>>* tokenizers = [] {
    auto* all = new std::vector<std::unique_ptr<HfTokenizer>>();
    for (const char* name : {"llama3", "qwen2", "mistral", "llama2"}) {
      absl::StatusOr<FamilyTokenizer> made = MakeFamilyTokenizer(
          *ParseTokenizerFamily(name), 300, TokenizerTrainingText());
      FUZZ_CHECK(made.ok(), "MakeFamilyTokenizer(%s) failed", name);
      absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
          HfTokenizer::FromJson(made->tokenizer);
      FUZZ_CHECK(tokenizer.ok(), "FromJson(%s) failed", name);
      all->push_back(*std::move(tokenizer));
    }
    return all;
  }();
  return *(*tokenizers)[index];
}

bool HasAddedTokenText(const HfTokenizer& tokenizer, const std::string& text) {
  for (const AddedToken& token : tokenizer.added_tokens().tokens()) {
    if (text.find(token.content) != std::string::npos) return true;
  }
  return false;
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  if (size < 1) return 0;
  const int family = data[0] % 4;
  const bool specials = (data[0] & 4) != 0;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const HfTokenizer& tokenizer = Family(family);

  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text, false);
  FUZZ_CHECK(ids.ok(), "Encode failed: %s",
             std::string(ids.status().message()).c_str());
  for (int32_t id : *ids) {
    FUZZ_CHECK(tokenizer.IdToToken(id) != nullptr, "unknown id %d", id);
  }
  const std::string decoded = SanitizeUtf8(tokenizer.Decode(*ids, false));
  FUZZ_CHECK(IsValidUtf8(decoded), "Decode is not UTF-8 after sanitizing");
  const std::string expected = SanitizeUtf8(text);
  const bool exact =
      family == 0 || (family >= 2 && !HasAddedTokenText(tokenizer, expected) &&
                      expected.find("\xE2\x96\x81") == std::string::npos &&
                      (expected.empty() || expected[0] != ' '));
  if (exact) {
    FUZZ_CHECK(decoded == expected,
               "layout %d: decode(encode(text)) is not the text", family);
  }
  if (specials) {
    absl::StatusOr<std::vector<int32_t>> wrapped = tokenizer.Encode(text, true);
    FUZZ_CHECK(wrapped.ok(), "Encode with special tokens failed");
    const size_t prefix = tokenizer.special_prefix().size();
    const size_t suffix = tokenizer.special_suffix().size();
    FUZZ_CHECK(wrapped->size() == ids->size() + prefix + suffix,
               "special tokens changed the ids between them");
    FUZZ_CHECK(std::equal(ids->begin(), ids->end(), wrapped->begin() + prefix),
               "special tokens changed the ids between them");
  }
  return 0;
}
