#include "model/hf_tokenizer/utf8.h"

#include <algorithm>
#include <cstdint>

namespace longctx {

size_t ValidUtf8PrefixLength(absl::string_view s, bool* complete) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length;
  unsigned char low = 0x80, high = 0xBF;  // Range of the second byte.
  if (lead < 0x80) {
    *complete = true;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // No overlong forms.
    if (lead == 0xED) high = 0x9F;  // No surrogates.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // No overlong forms.
    if (lead == 0xF4) high = 0x8F;  // Nothing above U+10FFFF.
  } else {
    *complete = false;
    return 0;
  }
  size_t i = 1;
  for (; i < length && i < s.size(); ++i) {
    const unsigned char c = byte(i);
    const unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
    if (c < lo || c > hi) break;
  }
  *complete = i == length;
  return i;
}

size_t DecodeUtf8Char(absl::string_view s, char32_t* code_point) {
  const unsigned char lead = static_cast<unsigned char>(s[0]);
  if (lead < 0x80) {
    *code_point = lead;
    return 1;
  }
  bool complete = false;
  const size_t n = ValidUtf8PrefixLength(s, &complete);
  if (!complete) {
    *code_point = 0xFFFD;
    return std::max<size_t>(n, 1);
  }
  char32_t cp = lead & (n == 2 ? 0x1F : n == 3 ? 0x0F : 0x07);
  for (size_t i = 1; i < n; ++i) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[i]) & 0x3F);
  }
  *code_point = cp;
  return n;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(absl::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    // ASCII runs, 8 bytes at a time.
    while (i + 8 <= s.size()) {
      uint64_t word;
      __builtin_memcpy(&word, s.data() + i, 8);
      if ((word & 0x8080808080808080ULL) != 0) break;
      i += 8;
    }
    if (i >= s.size()) break;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    bool complete = false;
    const size_t n = ValidUtf8PrefixLength(s.substr(i), &complete);
    if (!complete) return false;
    i += n;
  }
  return true;
}

std::string SanitizeUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    bool complete = false;
    const size_t n = ValidUtf8PrefixLength(s.substr(i), &complete);
    if (n > 0 && complete) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.append(kUtf8Replacement.data(), kUtf8Replacement.size());
      i += std::max<size_t>(n, 1);
    }
  }
  return out;
}

}  // namespace longctx
