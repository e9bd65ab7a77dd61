// Fuzz target: the byte tokenizer and the incremental detokenizer that turns
// generated ids into streamed text at the gateway
// (model/folder/tokenizer.h).
//
// Input: one byte that picks how ids are split into Push calls, then a
// payload that is used twice: as text (Encode, then Decode and detokenize its
// byte ids), and as 16-bit little-endian signed ids (bytes, special and
// unused ids, ids outside the vocabulary) for the detokenizer and TokenText.
//
// Properties checked: Encode gives the bytes; Decode of valid UTF-8 text gives
// it back and is always valid UTF-8; every Push returns valid UTF-8; for byte
// ids, the streamed text (all Pushes, then Flush) equals Decode of the whole
// sequence however it is split; a detokenizer reused after Flush behaves as a
// new one; TokenText is valid UTF-8; Decode fails exactly when an id is
// outside the vocabulary.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "fuzz/fuzz_check.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"

namespace longctx {
namespace {

constexpr int kVocab = 260;  // Bytes, bos 256, eos 257, unused 258 and 259.

const ByteTokenizer& TheTokenizer() {
  static const ByteTokenizer* tokenizer = [] {
    ModelConfig config;
    config.vocab_size = kVocab;
    config.bos_token_id = 256;
    config.eos_token_ids = {257};
    return ByteTokenizer::Create(config)->release();
  }();
  return *tokenizer;
}

// Stream pushes `ids` in pieces of 1 to 4 ids chosen by `pattern` and returns
// the streamed text, checking that every piece is valid UTF-8.
std::string Stream(IncrementalDetokenizer& detokenizer,
                   const std::vector<int32_t>& ids, uint8_t pattern) {
  std::string text;
  size_t at = 0;
  for (int k = 0; at < ids.size(); ++k) {
    const size_t n =
        std::min<size_t>(1 + ((pattern >> (2 * (k % 4))) & 3), ids.size() - at);
    const std::string piece =
        detokenizer.Push(absl::MakeConstSpan(ids).subspan(at, n));
    FUZZ_CHECK(IsValidUtf8(piece), "Push returned invalid UTF-8");
    text += piece;
    at += n;
  }
  const std::string rest = detokenizer.Flush();
  FUZZ_CHECK(IsValidUtf8(rest), "Flush returned invalid UTF-8");
  return text + rest;
}

}  // namespace
}  // namespace longctx

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace longctx;
  if (size < 1) return 0;
  const uint8_t pattern = data[0];
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ByteTokenizer& tokenizer = TheTokenizer();

  // Text through Encode and Decode.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer.Encode(text);
  FUZZ_CHECK(ids.ok(), "Encode failed");
  FUZZ_CHECK(ids->size() == text.size(), "one id per byte");
  for (size_t i = 0; i < text.size(); ++i) {
    FUZZ_CHECK((*ids)[i] == static_cast<unsigned char>(text[i]),
               "id %zu is not its byte", i);
  }
  absl::StatusOr<std::string> decoded = tokenizer.Decode(*ids);
  FUZZ_CHECK(decoded.ok(), "Decode of byte ids failed");
  FUZZ_CHECK(IsValidUtf8(*decoded), "Decode returned invalid UTF-8");
  if (IsValidUtf8(text)) {
    FUZZ_CHECK(*decoded == text, "valid UTF-8 does not round-trip");
  }

  // The same ids streamed, split two ways, and again after a Flush.
  std::unique_ptr<IncrementalDetokenizer> detokenizer =
      tokenizer.NewDetokenizer();
  const std::string streamed = Stream(*detokenizer, *ids, pattern);
  FUZZ_CHECK(streamed == *decoded,
             "streamed text (%zu bytes) differs from Decode (%zu bytes)",
             streamed.size(), decoded->size());
  FUZZ_CHECK(Stream(*detokenizer, *ids, 0) == *decoded,
             "a reused detokenizer, one id at a time, differs from Decode");

  // The payload as 16-bit ids: any id at all.
  std::vector<int32_t> any_ids;
  for (size_t i = 0; i + 1 < text.size(); i += 2) {
    any_ids.push_back(static_cast<int16_t>(
        static_cast<uint16_t>(static_cast<unsigned char>(text[i])) |
        static_cast<uint16_t>(static_cast<unsigned char>(text[i + 1])) << 8));
  }
  bool all_in_vocab = true;
  for (int32_t id : any_ids) {
    if (id < 0 || id >= kVocab) all_in_vocab = false;
    const std::string token = tokenizer.TokenText(id);
    FUZZ_CHECK(!token.empty() && IsValidUtf8(token),
               "TokenText(%d) is empty or invalid UTF-8", id);
  }
  absl::StatusOr<std::string> any_decoded = tokenizer.Decode(any_ids);
  FUZZ_CHECK(any_decoded.ok() == all_in_vocab,
             "Decode must fail exactly for ids outside the vocabulary");
  if (any_decoded.ok()) {
    FUZZ_CHECK(IsValidUtf8(*any_decoded), "Decode returned invalid UTF-8");
  }
  Stream(*tokenizer.NewDetokenizer(), any_ids, pattern);
  return 0;
}
