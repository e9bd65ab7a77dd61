#include "model/hf_tokenizer/byte_level.h"

#include <array>
#include <cstdint>

#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

struct Tables {
  std::array<std::string, 256> chars;  // Byte -> UTF-8 of its character.
  // Code point -> byte + 1 (0: not a byte-level character); the characters
  // are below U+0144.
  std::array<int16_t, 0x144> bytes{};

  Tables() {
    const auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
             (b >= 0xAE && b <= 0xFF);
    };
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? b : next++;
      AppendUtf8(cp, &chars[b]);
      bytes[cp] = static_cast<int16_t>(b + 1);
    }
  }
};

const Tables& GetTables() {
  static const Tables* tables = new Tables();
  return *tables;
}

}  // namespace

absl::string_view ByteLevelChar(unsigned char byte) {
  return GetTables().chars[byte];
}

void ByteLevelEncode(absl::string_view text, std::string* out) {
  const Tables& tables = GetTables();
  out->reserve(out->size() + text.size() * 2);
  for (char c : text) out->append(tables.chars[static_cast<unsigned char>(c)]);
}

bool ByteLevelDecode(absl::string_view chars, std::string* out) {
  const Tables& tables = GetTables();
  const size_t size = out->size();
  size_t i = 0;
  while (i < chars.size()) {
    char32_t cp;
    i += DecodeUtf8Char(chars.substr(i), &cp);
    if (cp >= tables.bytes.size() || tables.bytes[cp] == 0) {
      out->resize(size);
      return false;
    }
    out->push_back(static_cast<char>(tables.bytes[cp] - 1));
  }
  return true;
}

}  // namespace longctx
