#include "model/hf_tokenizer/normalizer.h"

#include <unicode/bytestream.h>
#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "model/hf_tokenizer/regex.h"
#include "model/hf_tokenizer/spec.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

bool IsAscii(absl::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status Normalize(std::string* text) const override {
    for (const auto& part : parts_) {
      absl::Status status = part->Normalize(text);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// NFC, NFD, NFKC, NFKD through ICU.
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* normalizer)
      : normalizer_(normalizer) {}
  absl::Status Normalize(std::string* text) const override {
    if (IsAscii(*text)) return absl::OkStatus();  // ASCII is in every form.
    UErrorCode error = U_ZERO_ERROR;
    std::string out;
    out.reserve(text->size());
    icu::StringByteSink<std::string> sink(&out);
    normalizer_->normalizeUTF8(0, icu::StringPiece(text->data(), text->size()),
                               sink, nullptr, error);
    if (U_FAILURE(error)) {
      return absl::InternalError(
          absl::StrCat("Unicode normalization failed: ", u_errorName(error)));
    }
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  const icu::Normalizer2* normalizer_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  absl::Status Normalize(std::string* text) const override {
    if (IsAscii(*text)) {
      for (char& c : *text) {
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
      }
      return absl::OkStatus();
    }
    icu::UnicodeString unicode = icu::UnicodeString::fromUTF8(
        icu::StringPiece(text->data(), text->size()));
    unicode.toLower(icu::Locale::getRoot());
    text->clear();
    unicode.toUTF8String(*text);
    return absl::OkStatus();
  }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  absl::Status Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
    return absl::OkStatus();
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::unique_ptr<Regex> pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  absl::Status Normalize(std::string* text) const override {
    std::string out;
    size_t last = 0;
    bool matched = false;
    absl::Status status =
        pattern_->ForEachMatch(*text, [&](size_t start, size_t end) {
          matched = true;
          out.append(*text, last, start - last);
          out.append(content_);
          last = end;
        });
    if (!status.ok()) return status;
    if (!matched) return absl::OkStatus();
    out.append(*text, last, std::string::npos);
    *text = std::move(out);
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<Regex> pattern_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  absl::Status Normalize(std::string* text) const override {
    size_t begin = 0, end = text->size();
    if (left_) {
      while (begin < end) {
        char32_t cp;
        const size_t n =
            DecodeUtf8Char(absl::string_view(*text).substr(begin), &cp);
        if (!IsUnicodeWhitespace(cp)) break;
        begin += n;
      }
    }
    if (right_) {
      while (end > begin) {
        size_t start = end - 1;
        while (start > begin &&
               (static_cast<unsigned char>((*text)[start]) & 0xC0) == 0x80) {
          --start;
        }
        char32_t cp;
        DecodeUtf8Char(absl::string_view(*text).substr(start, end - start),
                       &cp);
        if (!IsUnicodeWhitespace(cp)) break;
        end = start;
      }
    }
    *text = text->substr(begin, end - begin);
    return absl::OkStatus();
  }

 private:
  bool left_, right_;
};

const icu::Normalizer2* IcuNormalizer(absl::string_view type,
                                      UErrorCode* error) {
  if (type == "NFC") return icu::Normalizer2::getNFCInstance(*error);
  if (type == "NFD") return icu::Normalizer2::getNFDInstance(*error);
  if (type == "NFKC") return icu::Normalizer2::getNFKCInstance(*error);
  return icu::Normalizer2::getNFKDInstance(*error);
}

}  // namespace

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 ||
         cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

absl::StatusOr<std::unique_ptr<Normalizer>> MakeNormalizer(
    const nlohmann::json& spec, absl::string_view where) {
  if (spec.is_null()) return nullptr;
  absl::StatusOr<std::string> type = SpecType(spec, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const auto it = spec.find("normalizers");
    if (it == spec.end() || !it->is_array()) {
      return SpecError(where, "\"normalizers\" must be an array");
    }
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      absl::StatusOr<std::unique_ptr<Normalizer>> part = MakeNormalizer(
          (*it)[i], absl::StrCat(where, ".normalizers[", i, "]"));
      if (!part.ok()) return part.status();
      if (*part != nullptr) parts.push_back(*std::move(part));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (*type == "NFC" || *type == "NFD" || *type == "NFKC" || *type == "NFKD") {
    UErrorCode error = U_ZERO_ERROR;
    const icu::Normalizer2* normalizer = IcuNormalizer(*type, &error);
    if (U_FAILURE(error) || normalizer == nullptr) {
      return absl::InternalError(absl::StrCat(where, ": ICU has no ", *type,
                                              ": ", u_errorName(error)));
    }
    return std::make_unique<UnicodeNormalizer>(normalizer);
  }
  if (*type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (*type == "Prepend") {
    absl::StatusOr<std::string> prefix = SpecString(spec, "prepend", where);
    if (!prefix.ok()) return prefix.status();
    return std::make_unique<PrependNormalizer>(*std::move(prefix));
  }
  if (*type == "Replace") {
    absl::StatusOr<std::unique_ptr<Regex>> pattern =
        SpecPattern(spec, "pattern", where);
    if (!pattern.ok()) return pattern.status();
    absl::StatusOr<std::string> content = SpecString(spec, "content", where);
    if (!content.ok()) return content.status();
    return std::make_unique<ReplaceNormalizer>(*std::move(pattern),
                                               *std::move(content));
  }
  if (*type == "Strip") {
    absl::StatusOr<bool> left = SpecBool(spec, "strip_left", where, true);
    if (!left.ok()) return left.status();
    absl::StatusOr<bool> right = SpecBool(spec, "strip_right", where, true);
    if (!right.ok()) return right.status();
    return std::make_unique<StripNormalizer>(*left, *right);
  }
  return UnsupportedType(where, "normalizer", *type);
}

}  // namespace longctx
