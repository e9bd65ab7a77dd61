#include "model/chat_template/text_util.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/hf_tokenizer/utf8.h"
#include "unicode/locid.h"
#include "unicode/uchar.h"
#include "unicode/unistr.h"

namespace longctx {
namespace jinja {
namespace {

// Decodes the character at s[pos]; returns its length.
size_t Decode(absl::string_view s, size_t pos, char32_t* c) {
  return DecodeUtf8Char(s.substr(pos), c);
}

std::string FromUnicode(const icu::UnicodeString& u) {
  std::string out;
  u.toUTF8String(out);
  return out;
}

icu::UnicodeString ToUnicode(absl::string_view s) {
  return icu::UnicodeString::fromUTF8(icu::StringPiece(s.data(), s.size()));
}

bool IsCased(char32_t c) { return u_hasBinaryProperty(c, UCHAR_CASED); }

bool IsPrintable(char32_t c) {
  if (c == ' ') return true;
  switch (u_charType(c)) {
    case U_CONTROL_CHAR:
    case U_FORMAT_CHAR:
    case U_SURROGATE:
    case U_PRIVATE_USE_CHAR:
    case U_UNASSIGNED:
    case U_LINE_SEPARATOR:
    case U_PARAGRAPH_SEPARATOR:
    case U_SPACE_SEPARATOR:
      return false;
    default:
      return true;
  }
}

void AppendHex(const char* format, unsigned value, std::string* out) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), format, value);
  out->append(buf);
}

bool IsLineBoundary(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || c == 0x1c ||
         c == 0x1d || c == 0x1e || c == 0x85 || c == 0x2028 || c == 0x2029;
}

}  // namespace

bool IsPySpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 ||
         c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
         c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f ||
         c == 0x3000;
}

std::vector<size_t> CharOffsets(absl::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  size_t pos = 0;
  while (pos < s.size()) {
    offsets.push_back(pos);
    char32_t c;
    pos += Decode(s, pos, &c);
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t CharCount(absl::string_view s) {
  size_t n = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    pos += Decode(s, pos, &c);
    ++n;
  }
  return n;
}

size_t LastCharStart(absl::string_view s, char32_t* c) {
  // Back over at most three continuation bytes to a lead byte; a sequence
  // that does not decode to exactly the rest counts as its last byte.
  size_t start = s.size() - 1;
  for (int i = 0; i < 3 && start > 0 &&
                  (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80;
       ++i) {
    --start;
  }
  if (Decode(s, start, c) != s.size() - start) {
    start = s.size() - 1;
    Decode(s, start, c);
  }
  return start;
}

std::string PyStrip(absl::string_view s, const std::string* chars, bool left,
                    bool right) {
  std::vector<char32_t> set;
  if (chars != nullptr) {
    size_t pos = 0;
    while (pos < chars->size()) {
      char32_t c;
      pos += Decode(*chars, pos, &c);
      set.push_back(c);
    }
  }
  auto strip = [&](char32_t c) {
    if (chars == nullptr) return IsPySpace(c);
    for (char32_t x : set) {
      if (x == c) return true;
    }
    return false;
  };
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      char32_t c;
      const size_t n = Decode(s, begin, &c);
      if (!strip(c)) break;
      begin += n;
    }
  }
  if (right) {
    while (end > begin) {
      char32_t c;
      const size_t start = LastCharStart(s.substr(0, end), &c);
      if (start < begin || !strip(c)) break;
      end = start;
    }
  }
  return std::string(s.substr(begin, end - begin));
}

bool IsAscii(absl::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

std::vector<std::string> PySplitWhitespace(absl::string_view s,
                                           long long maxsplit) {
  std::vector<std::string> parts;
  size_t pos = 0;
  auto skip_space = [&]() {
    while (pos < s.size()) {
      char32_t c;
      const size_t n = Decode(s, pos, &c);
      if (!IsPySpace(c)) break;
      pos += n;
    }
  };
  skip_space();
  while (pos < s.size()) {
    if (maxsplit >= 0 && static_cast<long long>(parts.size()) >= maxsplit) {
      // The rest as it is (its leading whitespace is gone already).
      parts.emplace_back(s.substr(pos));
      break;
    }
    const size_t start = pos;
    while (pos < s.size()) {
      char32_t c;
      const size_t n = Decode(s, pos, &c);
      if (IsPySpace(c)) break;
      pos += n;
    }
    parts.emplace_back(s.substr(start, pos - start));
    skip_space();
  }
  return parts;
}

std::vector<std::string> PySplitLines(absl::string_view s) {
  std::vector<std::string> lines;
  size_t start = 0;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    const size_t n = Decode(s, pos, &c);
    if (IsLineBoundary(c)) {
      lines.emplace_back(s.substr(start, pos - start));
      pos += n;
      if (c == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
      start = pos;
    } else {
      pos += n;
    }
  }
  if (start < s.size()) lines.emplace_back(s.substr(start));
  return lines;
}

std::string PyUpper(absl::string_view s) {
  icu::UnicodeString u = ToUnicode(s);
  u.toUpper(icu::Locale::getRoot());
  return FromUnicode(u);
}

std::string PyLower(absl::string_view s) {
  icu::UnicodeString u = ToUnicode(s);
  u.toLower(icu::Locale::getRoot());
  return FromUnicode(u);
}

std::string PyCapitalize(absl::string_view s) {
  if (s.empty()) return "";
  char32_t c;
  const size_t n = Decode(s, 0, &c);
  std::string out;
  AppendUtf8(u_totitle(c), &out);
  out += PyLower(s.substr(n));
  return out;
}

std::string PyTitle(absl::string_view s) {
  std::string out;
  bool previous_cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    pos += Decode(s, pos, &c);
    const char32_t mapped = previous_cased ? u_tolower(c) : u_totitle(c);
    AppendUtf8(mapped, &out);
    previous_cased = IsCased(c);
  }
  return out;
}

std::string JinjaTitle(absl::string_view s) {
  auto is_separator = [](char32_t c) {
    return c == '-' || c == '(' || c == '{' || c == '[' || c == '<' ||
           IsPySpace(c);
  };
  std::string out;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    size_t n = Decode(s, pos, &c);
    if (is_separator(c)) {
      absl::StrAppend(&out, s.substr(pos, n));
      pos += n;
      continue;
    }
    // A word: up to the next separator.
    size_t end = pos + n;
    while (end < s.size()) {
      char32_t d;
      const size_t m = Decode(s, end, &d);
      if (is_separator(d)) break;
      end += m;
    }
    out += PyUpper(s.substr(pos, n));
    out += PyLower(s.substr(pos + n, end - pos - n));
    pos = end;
  }
  return out;
}

bool PyIsLower(absl::string_view s) {
  bool cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    pos += Decode(s, pos, &c);
    if (u_isUUppercase(c) || u_istitle(c)) return false;
    if (u_isULowercase(c)) cased = true;
  }
  return cased;
}

bool PyIsUpper(absl::string_view s) {
  bool cased = false;
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    pos += Decode(s, pos, &c);
    if (u_isULowercase(c) || u_istitle(c)) return false;
    if (u_isUUppercase(c)) cased = true;
  }
  return cased;
}

void AppendPyStrRepr(absl::string_view s, std::string* out) {
  const bool has_single = s.find('\'') != absl::string_view::npos;
  const bool has_double = s.find('"') != absl::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  out->push_back(quote);
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    const size_t n = Decode(s, pos, &c);
    if (c == static_cast<char32_t>(quote) || c == '\\') {
      out->push_back('\\');
      out->push_back(static_cast<char>(c));
    } else if (c == '\t') {
      out->append("\\t");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '\r') {
      out->append("\\r");
    } else if (c < 0x20 || c == 0x7f) {
      AppendHex("\\x%02x", c, out);
    } else if (c < 0x7f) {
      out->push_back(static_cast<char>(c));
    } else if (!IsPrintable(c)) {
      if (c <= 0xff) {
        AppendHex("\\x%02x", c, out);
      } else if (c <= 0xffff) {
        AppendHex("\\u%04x", c, out);
      } else {
        AppendHex("\\U%08x", c, out);
      }
    } else {
      absl::StrAppend(out, s.substr(pos, n));
    }
    pos += n;
  }
  out->push_back(quote);
}

std::string PyFloatRepr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  char buf[64];
  const std::to_chars_result r =
      std::to_chars(buf, buf + sizeof(buf), d, std::chars_format::scientific);
  const std::string sci(buf, r.ptr);  // e.g. "-1.2345e+02", "5e-324"
  std::string out;
  size_t i = 0;
  if (sci[0] == '-') {
    out.push_back('-');
    i = 1;
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (size_t j = i; j < e; ++j) {
    if (sci[j] != '.') digits.push_back(sci[j]);
  }
  const int exponent = std::atoi(sci.c_str() + e + 1);
  const int decpt = exponent + 1;  // digits[0] is at 10^(decpt-1)
  const int ndigits = static_cast<int>(digits.size());
  if (decpt <= -4 || decpt > 16) {
    out.push_back(digits[0]);
    if (ndigits > 1) {
      out.push_back('.');
      out.append(digits, 1, std::string::npos);
    }
    char exp[16];
    std::snprintf(exp, sizeof(exp), "e%c%02d", exponent < 0 ? '-' : '+',
                  std::abs(exponent));
    out.append(exp);
  } else if (decpt <= 0) {
    out.append("0.");
    out.append(static_cast<size_t>(-decpt), '0');
    out.append(digits);
  } else if (decpt >= ndigits) {
    out.append(digits);
    out.append(static_cast<size_t>(decpt - ndigits), '0');
    out.append(".0");
  } else {
    out.append(digits, 0, decpt);
    out.push_back('.');
    out.append(digits, decpt, std::string::npos);
  }
  return out;
}

void AppendJsonString(absl::string_view s, bool ensure_ascii,
                      std::string* out) {
  out->push_back('"');
  size_t pos = 0;
  while (pos < s.size()) {
    char32_t c;
    const size_t n = Decode(s, pos, &c);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default:
        if (c < 0x20 || (ensure_ascii && c >= 0x7f)) {
          if (c >= 0x10000) {
            const unsigned v = c - 0x10000;
            AppendHex("\\u%04x", 0xd800 + (v >> 10), out);
            AppendHex("\\u%04x", 0xdc00 + (v & 0x3ff), out);
          } else {
            AppendHex("\\u%04x", c, out);
          }
        } else {
          absl::StrAppend(out, s.substr(pos, n));
        }
    }
    pos += n;
  }
  out->push_back('"');
}

}  // namespace jinja
}  // namespace longctx
