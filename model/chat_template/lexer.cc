#include "model/chat_template/lexer.h"

#include <cerrno>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/text_util.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace jinja {
namespace {

bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsNameChar(char c) { return IsNameStart(c) || (c >= '0' && c <= '9'); }
bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Lexer {
 public:
  explicit Lexer(absl::string_view src) : src_(src) {}

  absl::StatusOr<std::vector<Token>> Run() {
    while (pos_ < src_.size()) {
      const size_t tag = FindTagStart(pos_);
      if (tag == absl::string_view::npos) {
        EmitText(pos_, src_.substr(pos_));
        break;
      }
      const char kind = src_[tag + 1];
      const char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      absl::string_view text = src_.substr(pos_, tag - pos_);
      if (sign == '-') {
        text = RStripWhitespace(text);
      } else if (kind != '{' && sign != '+') {
        text = LStripBlock(text);
      }
      EmitText(pos_, text);
      if (kind == '#') {
        absl::Status s = LexComment(tag, sign);
        if (!s.ok()) return s;
        continue;
      }
      const bool stmt = kind == '%';
      Push(stmt ? TokenKind::kStmtBegin : TokenKind::kExprBegin,
           stmt ? "{%" : "{{", tag);
      pos_ = tag + 2;
      if (sign == '-' || (stmt && sign == '+')) ++pos_;
      absl::Status s = LexInside(stmt, tag);
      if (!s.ok()) return s;
    }
    Push(TokenKind::kEof, "", src_.size());
    return std::move(tokens_);
  }

 private:
  absl::Status Error(size_t offset, absl::string_view problem) const {
    return SyntaxError(src_, offset, problem);
  }

  bool StartsWith(size_t pos, absl::string_view s) const {
    return src_.substr(pos, s.size()) == s;
  }

  size_t FindTagStart(size_t from) const {
    size_t pos = from;
    while (true) {
      pos = src_.find('{', pos);
      if (pos == absl::string_view::npos || pos + 1 >= src_.size()) {
        return absl::string_view::npos;
      }
      const char next = src_[pos + 1];
      if (next == '{' || next == '%' || next == '#') return pos;
      ++pos;
    }
  }

  void Push(TokenKind kind, std::string text, size_t offset) {
    Token token;
    token.kind = kind;
    token.text = std::move(text);
    token.offset = offset;
    tokens_.push_back(std::move(token));
  }

  void EmitText(size_t offset, absl::string_view text) {
    if (!text.empty()) Push(TokenKind::kText, std::string(text), offset);
  }

  static absl::string_view RStripWhitespace(absl::string_view text) {
    size_t end = text.size();
    while (end > 0) {
      char32_t c;
      const size_t start = LastCharStart(text.substr(0, end), &c);
      if (!IsPySpace(c)) break;
      end = start;
    }
    return text.substr(0, end);
  }

  // lstrip_blocks: drops the whitespace between the last line start of
  // `text` and the tag that follows it.
  absl::string_view LStripBlock(absl::string_view text) const {
    const size_t newline = text.rfind('\n');
    const size_t line_start =
        newline == absl::string_view::npos ? 0 : newline + 1;
    if (line_start == 0 && !line_starting_) return text;
    absl::string_view rest = text.substr(line_start);
    if (rest.empty()) return text;
    size_t pos = 0;
    while (pos < rest.size()) {
      char32_t c;
      pos += DecodeUtf8Char(rest.substr(pos), &c);
      if (!IsPySpace(c)) return text;
    }
    return text.substr(0, line_start);
  }

  void SkipWhitespace() {
    while (pos_ < src_.size()) {
      char32_t c;
      const size_t n = DecodeUtf8Char(src_.substr(pos_), &c);
      if (!IsPySpace(c)) break;
      pos_ += n;
    }
  }

  // After a tag's end: "-" strips all whitespace, else trim_blocks removes
  // one newline (when `trim`).
  void AfterTagEnd(bool strip, bool trim) {
    const size_t start = pos_;
    if (strip) {
      SkipWhitespace();
    } else if (trim && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
    line_starting_ = pos_ > start && src_[pos_ - 1] == '\n';
  }

  absl::Status LexComment(size_t tag, char sign) {
    const size_t body = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
    const size_t end = src_.find("#}", body);
    if (end == absl::string_view::npos) {
      return Error(tag, "unterminated comment (missing '#}')");
    }
    const bool strip_after = end > body && src_[end - 1] == '-';
    const bool keep_newline = end > body && src_[end - 1] == '+';
    pos_ = end + 2;
    AfterTagEnd(strip_after, !keep_newline);
    return absl::OkStatus();
  }

  absl::Status LexInside(bool stmt, size_t tag) {
    std::vector<char> closers;
    while (true) {
      SkipWhitespace();
      if (pos_ >= src_.size()) {
        return Error(tag, stmt ? "unterminated tag (missing '%}')"
                               : "unterminated expression (missing '}}')");
      }
      if (closers.empty()) {
        if (stmt) {
          if (StartsWith(pos_, "-%}") || StartsWith(pos_, "+%}") ||
              StartsWith(pos_, "%}")) {
            const char c = src_[pos_];
            Push(TokenKind::kStmtEnd, "%}", pos_);
            pos_ += c == '%' ? 2 : 3;
            AfterTagEnd(c == '-', c == '%');
            return absl::OkStatus();
          }
        } else if (StartsWith(pos_, "-}}") || StartsWith(pos_, "}}")) {
          const char c = src_[pos_];
          Push(TokenKind::kExprEnd, "}}", pos_);
          pos_ += c == '-' ? 3 : 2;
          AfterTagEnd(c == '-', false);
          return absl::OkStatus();
        }
      }
      const char c = src_[pos_];
      const size_t start = pos_;
      if (IsNameStart(c)) {
        while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
        Push(TokenKind::kName, std::string(src_.substr(start, pos_ - start)),
             start);
        continue;
      }
      if (IsDigit(c)) {
        absl::Status s = LexNumber();
        if (!s.ok()) return s;
        continue;
      }
      if (c == '\'' || c == '"') {
        absl::Status s = LexString();
        if (!s.ok()) return s;
        continue;
      }
      static constexpr absl::string_view kTwoChar[] = {
          "//", "**", "==", "!=", "<=", ">="};
      bool matched = false;
      for (absl::string_view op : kTwoChar) {
        if (StartsWith(pos_, op)) {
          Push(TokenKind::kOp, std::string(op), pos_);
          pos_ += 2;
          matched = true;
          break;
        }
      }
      if (matched) continue;
      if (absl::string_view("+-*/%~<>=.,:|()[]{}").find(c) !=
          absl::string_view::npos) {
        if (c == '(' || c == '[' || c == '{') {
          closers.push_back(c == '(' ? ')' : (c == '[' ? ']' : '}'));
        } else if (c == ')' || c == ']' || c == '}') {
          if (closers.empty() || closers.back() != c) {
            return Error(pos_,
                         absl::StrCat("unexpected '", std::string(1, c), "'"));
          }
          closers.pop_back();
        }
        Push(TokenKind::kOp, std::string(1, c), pos_);
        ++pos_;
        continue;
      }
      char32_t code_point;
      const size_t n = DecodeUtf8Char(src_.substr(pos_), &code_point);
      return Error(pos_, absl::StrCat("unexpected character '",
                                      src_.substr(pos_, n), "'"));
    }
  }

  // Digits with optional "_" separators; returns how many chars matched.
  size_t ScanDigits(size_t pos, bool (*is_digit)(char)) const {
    size_t p = pos;
    while (p < src_.size()) {
      if (is_digit(src_[p])) {
        ++p;
      } else if (src_[p] == '_' && p > pos && p + 1 < src_.size() &&
                 is_digit(src_[p + 1])) {
        ++p;
      } else {
        break;
      }
    }
    return p - pos;
  }

  absl::Status LexNumber() {
    const size_t start = pos_;
    // After ".", as in messages.0.content, only an integer.
    const bool after_dot = !tokens_.empty() &&
                           tokens_.back().kind == TokenKind::kOp &&
                           tokens_.back().text == ".";
    // 0x / 0o / 0b integers.
    if (src_[pos_] == '0' && pos_ + 2 < src_.size() && !after_dot) {
      const char base_char = src_[pos_ + 1] | 0x20;
      int base = base_char == 'x'
                     ? 16
                     : (base_char == 'o' ? 8 : (base_char == 'b' ? 2 : 0));
      if (base != 0) {
        size_t p = pos_ + 2;
        uint64_t value = 0;
        bool any = false;
        while (p < src_.size()) {
          if (src_[p] == '_') {
            ++p;
            continue;
          }
          const int d = HexDigit(src_[p]);
          if (d < 0 || d >= base) break;
          if (value > (static_cast<uint64_t>(INT64_MAX) - d) / base) {
            return Error(start, "integer literal too large");
          }
          value = value * base + d;
          any = true;
          ++p;
        }
        if (any) {
          Token token;
          token.kind = TokenKind::kInt;
          token.int_value = static_cast<int64_t>(value);
          token.text = std::string(src_.substr(start, p - start));
          token.offset = start;
          tokens_.push_back(std::move(token));
          pos_ = p;
          return absl::OkStatus();
        }
      }
    }
    size_t p = pos_ + ScanDigits(pos_, IsDigit);
    bool is_float = false;
    if (!after_dot) {
      if (p + 1 < src_.size() && src_[p] == '.' && IsDigit(src_[p + 1])) {
        p += 1 + ScanDigits(p + 1, IsDigit);
        is_float = true;
      }
      if (p < src_.size() && (src_[p] == 'e' || src_[p] == 'E')) {
        size_t q = p + 1;
        if (q < src_.size() && (src_[q] == '+' || src_[q] == '-')) ++q;
        const size_t digits = ScanDigits(q, IsDigit);
        if (digits > 0) {
          p = q + digits;
          is_float = true;
        }
      }
    }
    std::string literal;
    for (size_t i = start; i < p; ++i) {
      if (src_[i] != '_') literal.push_back(src_[i]);
    }
    Token token;
    token.offset = start;
    token.text = std::string(src_.substr(start, p - start));
    if (is_float) {
      token.kind = TokenKind::kFloat;
      token.float_value = std::strtod(literal.c_str(), nullptr);
    } else {
      token.kind = TokenKind::kInt;
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(literal.c_str(), &end, 10);
      if (errno == ERANGE) return Error(start, "integer literal too large");
      token.int_value = v;
    }
    tokens_.push_back(std::move(token));
    pos_ = p;
    return absl::OkStatus();
  }

  absl::Status LexString() {
    const size_t start = pos_;
    const char quote = src_[pos_++];
    std::string value;
    char32_t pending_high = 0;  // a \uD800-\uDBFF waiting for its pair
    auto flush_high = [&]() {
      if (pending_high != 0) {
        AppendUtf8(0xFFFD, &value);
        pending_high = 0;
      }
    };
    auto append_code_point = [&](uint32_t cp) -> bool {
      if (cp > 0x10FFFF) return false;
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        flush_high();
        pending_high = cp;
        return true;
      }
      if (cp >= 0xDC00 && cp <= 0xDFFF) {
        if (pending_high != 0) {
          const char32_t combined =
              0x10000 + ((pending_high - 0xD800) << 10) + (cp - 0xDC00);
          pending_high = 0;
          AppendUtf8(combined, &value);
        } else {
          AppendUtf8(0xFFFD, &value);
        }
        return true;
      }
      flush_high();
      AppendUtf8(cp, &value);
      return true;
    };
    while (true) {
      if (pos_ >= src_.size()) {
        return Error(start, "unterminated string literal");
      }
      const char c = src_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        flush_high();
        value.push_back(c);
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= src_.size()) {
        return Error(start, "unterminated string literal");
      }
      const char e = src_[pos_ + 1];
      const size_t escape_at = pos_;
      pos_ += 2;
      int hex_digits = 0;
      switch (e) {
        case 'n':
          flush_high();
          value.push_back('\n');
          continue;
        case 't':
          flush_high();
          value.push_back('\t');
          continue;
        case 'r':
          flush_high();
          value.push_back('\r');
          continue;
        case 'b':
          flush_high();
          value.push_back('\b');
          continue;
        case 'f':
          flush_high();
          value.push_back('\f');
          continue;
        case 'v':
          flush_high();
          value.push_back('\v');
          continue;
        case 'a':
          flush_high();
          value.push_back('\a');
          continue;
        case '\\':
        case '\'':
        case '"':
          flush_high();
          value.push_back(e);
          continue;
        case '\n':  // line continuation
          continue;
        case 'x':
          hex_digits = 2;
          break;
        case 'u':
          hex_digits = 4;
          break;
        case 'U':
          hex_digits = 8;
          break;
        default:
          break;
      }
      if (hex_digits > 0) {
        uint32_t cp = 0;
        for (int i = 0; i < hex_digits; ++i) {
          const int d = pos_ + i < src_.size() ? HexDigit(src_[pos_ + i]) : -1;
          if (d < 0) {
            return Error(escape_at,
                         absl::StrCat("truncated \\", std::string(1, e),
                                      " escape in string literal"));
          }
          cp = cp * 16 + d;
        }
        pos_ += hex_digits;
        if (!append_code_point(cp)) {
          return Error(escape_at, "escape beyond U+10FFFF in string literal");
        }
        continue;
      }
      if (e >= '0' && e <= '7') {
        uint32_t cp = e - '0';
        for (int i = 0; i < 2 && pos_ < src_.size() && src_[pos_] >= '0' &&
                        src_[pos_] <= '7';
             ++i) {
          cp = cp * 8 + (src_[pos_++] - '0');
        }
        append_code_point(cp);
        continue;
      }
      // Unknown escape: Python keeps the backslash.
      flush_high();
      value.push_back('\\');
      pos_ = escape_at + 1;
    }
    flush_high();
    Token token;
    token.kind = TokenKind::kString;
    token.text = std::move(value);
    token.offset = start;
    tokens_.push_back(std::move(token));
    return absl::OkStatus();
  }

  absl::string_view src_;
  size_t pos_ = 0;
  // Whether the text that follows the last tag starts a line.
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::string NormalizeSource(absl::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out.push_back('\n');
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out.push_back(source[i]);
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

absl::StatusOr<std::vector<Token>> Tokenize(absl::string_view source) {
  return Lexer(source).Run();
}

int LineOf(absl::string_view source, size_t offset) {
  int line = 1;
  for (size_t i = 0; i < offset && i < source.size(); ++i) {
    if (source[i] == '\n') ++line;
  }
  return line;
}

absl::Status SyntaxError(absl::string_view source, size_t offset,
                         absl::string_view problem) {
  if (offset > source.size()) offset = source.size();
  const size_t newline = source.rfind('\n', offset == 0 ? 0 : offset - 1);
  size_t line_start = 0;
  if (newline != absl::string_view::npos && newline < offset) {
    line_start = newline + 1;
  }
  const size_t column =
      CharCount(source.substr(line_start, offset - line_start)) + 1;
  return absl::InvalidArgumentError(
      absl::StrCat("chat template line ", LineOf(source, offset), " column ",
                   column, ": ", problem));
}

}  // namespace jinja
}  // namespace longctx
