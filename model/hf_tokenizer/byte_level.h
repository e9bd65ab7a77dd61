// The byte-level alphabet of GPT-2 style tokenizers: each of the 256 byte
// values is shown as one printable Unicode character (printable Latin-1 bytes
// as themselves, the others as U+0100 onwards), so that BPE works on text
// whatever its bytes.
#ifndef LONGCTX_MODEL_HF_TOKENIZER_BYTE_LEVEL_H_
#define LONGCTX_MODEL_HF_TOKENIZER_BYTE_LEVEL_H_

#include <string>

#include "absl/strings/string_view.h"

namespace longctx {

// ByteLevelChar returns the UTF-8 of the character that stands for `byte`.
absl::string_view ByteLevelChar(unsigned char byte);

// ByteLevelEncode appends, for each byte of `text`, its character to `out`.
void ByteLevelEncode(absl::string_view text, std::string* out);

// ByteLevelDecode turns a string of byte-level characters back into bytes,
// appended to `out`. False (and `out` unchanged) when a character is not one
// of the 256.
bool ByteLevelDecode(absl::string_view chars, std::string* out);

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_BYTE_LEVEL_H_
