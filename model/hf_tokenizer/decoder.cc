#include "model/hf_tokenizer/decoder.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "model/hf_tokenizer/byte_level.h"
#include "model/hf_tokenizer/regex.h"
#include "model/hf_tokenizer/spec.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> parts)
      : parts_(std::move(parts)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (const auto& part : parts_) part->Decode(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> parts_;
};

// ByteLevel: each token's characters back to its bytes; a token with a
// character outside the byte alphabet (an added token's text) stays as it is.
// All tokens become one string.
class ByteLevelDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& token : *tokens) {
      if (!ByteLevelDecode(token, &bytes)) bytes.append(token);
    }
    tokens->assign(1, std::move(bytes));
  }
};

// ByteFallback: runs of "<0xXX>" tokens become their bytes. Bytes that are
// not UTF-8 stay as they are, for the caller to replace (one U+FFFD per
// maximal invalid part; the Rust library makes one per byte of the run):
// so a stream that stops inside a character can still complete it, and
// the characters before it keep their text.
class ByteFallbackDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string bytes;
    size_t byte_tokens = 0;
    const auto flush = [&] {
      if (byte_tokens == 0) return;
      out.push_back(bytes);
      bytes.clear();
      byte_tokens = 0;
    };
    for (std::string& token : *tokens) {
      int value = -1;
      if (token.size() == 6 && token[0] == '<' && token[1] == '0' &&
          token[2] == 'x' && token[5] == '>') {
        value = HexByte(token[3], token[4]);
      }
      if (value < 0) {
        flush();
        out.push_back(std::move(token));
        continue;
      }
      bytes.push_back(static_cast<char>(value));
      ++byte_tokens;
    }
    flush();
    *tokens = std::move(out);
  }

 private:
  static int HexDigit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  }
  static int HexByte(char high, char low) {
    const int h = HexDigit(high), l = HexDigit(low);
    return h < 0 || l < 0 ? -1 : h * 16 + l;
  }
};

class FuseDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string joined;
    for (const std::string& token : *tokens) joined += token;
    tokens->assign(1, std::move(joined));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      // Tokens are valid UTF-8 here unless an earlier step made bytes; those
      // are left alone rather than handed to the matcher.
      if (!IsValidUtf8(token)) continue;
      std::string out;
      size_t last = 0;
      bool matched = false;
      // A failing match (a pathological pattern) leaves the token as it is.
      const absl::Status status =
          pattern_->ForEachMatch(token, [&](size_t start, size_t end) {
            matched = true;
            out.append(token, last, start - last);
            out.append(content_);
            last = end;
          });
      if (!status.ok() || !matched) continue;
      out.append(token, last, std::string::npos);
      token = std::move(out);
    }
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

// Strip removes up to `start` leading and `stop` trailing `content`
// characters from every token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& token : *tokens) {
      absl::string_view view = token;
      for (int i = 0; i < start_ && absl::StartsWith(view, content_); ++i) {
        view.remove_prefix(content_.size());
      }
      for (int i = 0; i < stop_ && absl::EndsWith(view, content_); ++i) {
        view.remove_suffix(content_.size());
      }
      token = std::string(view);
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

// Metaspace: "▁" back to spaces; the first token loses the space the
// pre-tokenizer prepended (unless it prepends none).
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool prepends)
      : replacement_(std::move(replacement)), prepends_(prepends) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& token = (*tokens)[i];
      token = absl::StrReplaceAll(token, {{replacement_, " "}});
      if (i == 0 && prepends_ && !token.empty() && token[0] == ' ') {
        token.erase(0, 1);
      }
    }
  }

 private:
  std::string replacement_;
  bool prepends_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> MakeDecoder(const nlohmann::json& spec,
                                                     absl::string_view where) {
  if (spec.is_null()) return nullptr;
  absl::StatusOr<std::string> type = SpecType(spec, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const auto it = spec.find("decoders");
    if (it == spec.end() || !it->is_array()) {
      return SpecError(where, "\"decoders\" must be an array");
    }
    std::vector<std::unique_ptr<Decoder>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      absl::StatusOr<std::unique_ptr<Decoder>> part =
          MakeDecoder((*it)[i], absl::StrCat(where, ".decoders[", i, "]"));
      if (!part.ok()) return part.status();
      if (*part != nullptr) parts.push_back(*std::move(part));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (*type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (*type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (*type == "Fuse") return std::make_unique<FuseDecoder>();
  if (*type == "Replace") {
    absl::StatusOr<std::unique_ptr<Regex>> pattern =
        SpecPattern(spec, "pattern", where);
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<std::string> content = SpecString(spec, "content", where);
    if (!content.ok()) return content.status();
    return std::make_unique<ReplaceDecoder>(*std::move(pattern),
                                            *std::move(content));
  }
  if (*type == "Strip") {
    absl::StatusOr<std::string> content = SpecChar(spec, "content", where, " ");
    if (!content.ok()) return content.status();
    absl::StatusOr<int64_t> start = SpecInt(spec, "start", where, 0);
    if (!start.ok()) return start.status();
    absl::StatusOr<int64_t> stop = SpecInt(spec, "stop", where, 0);
    if (!stop.ok()) return stop.status();
    if (*start < 0 || *start > 1024 || *stop < 0 || *stop > 1024) {
      return SpecError(where, "\"start\" and \"stop\" must be in [0, 1024]");
    }
    return std::make_unique<StripDecoder>(
        *std::move(content), static_cast<int>(*start), static_cast<int>(*stop));
  }
  if (*type == "Metaspace") {
    absl::StatusOr<std::string> replacement =
        SpecChar(spec, "replacement", where, "\xE2\x96\x81");
    if (!replacement.ok()) return replacement.status();
    absl::StatusOr<bool> prefix =
        SpecBool(spec, "add_prefix_space", where, true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<std::string> scheme =
        SpecString(spec, "prepend_scheme", where, *prefix ? "always" : "never");
    if (!scheme.ok()) return scheme.status();
    return std::make_unique<MetaspaceDecoder>(*std::move(replacement),
                                              *scheme != "never");
  }
  return UnsupportedType(where, "decoder", *type);
}

}  // namespace longctx
