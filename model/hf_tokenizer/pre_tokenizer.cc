#include "model/hf_tokenizer/pre_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "model/hf_tokenizer/byte_level.h"
#include "model/hf_tokenizer/regex.h"
#include "model/hf_tokenizer/spec.h"

namespace longctx {
namespace {

using Range = std::pair<size_t, size_t>;

// GPT-2's split, which ByteLevel applies when use_regex is true.
constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// SplitWords splits every word at the matches of `regex`.
absl::Status SplitWords(const Regex& regex, SplitBehavior behavior, bool invert,
                        std::vector<PreToken>* words) {
  std::vector<PreToken> out;
  out.reserve(words->size());
  std::vector<Range> matches;
  for (PreToken& word : *words) {
    matches.clear();
    absl::Status status = regex.ForEachMatch(
        word.text,
        [&](size_t start, size_t end) { matches.emplace_back(start, end); });
    if (!status.ok()) return status;
    if (matches.size() == 1 && matches[0].first == 0 &&
        matches[0].second == word.text.size() &&
        behavior != SplitBehavior::kRemoved && !invert) {
      out.push_back(std::move(word));  // The whole word is one match.
      continue;
    }
    bool first = true;
    for (const Range& range :
         SplitRanges(word.text.size(), matches, behavior, invert)) {
      out.push_back(
          PreToken{word.text.substr(range.first, range.second - range.first),
                   word.at_start && first && range.first == 0});
      first = false;
    }
  }
  *words = std::move(out);
  return absl::OkStatus();
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(
      std::vector<std::unique_ptr<PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  absl::Status PreTokenize(std::vector<PreToken>* words) const override {
    for (const auto& part : parts_) {
      absl::Status status = part->PreTokenize(words);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, SplitBehavior behavior,
                    bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  absl::Status PreTokenize(std::vector<PreToken>* words) const override {
    return SplitWords(*regex_, behavior_, invert_, words);
  }

 private:
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  absl::Status PreTokenize(std::vector<PreToken>* words) const override {
    if (add_prefix_space_) {
      for (PreToken& word : *words) {
        if (word.text.empty() || word.text[0] != ' ') word.text.insert(0, " ");
      }
    }
    if (regex_ != nullptr) {
      absl::Status status =
          SplitWords(*regex_, SplitBehavior::kIsolated, false, words);
      if (!status.ok()) return status;
    }
    std::string mapped;
    for (PreToken& word : *words) {
      mapped.clear();
      ByteLevelEncode(word.text, &mapped);
      std::swap(word.text, mapped);
    }
    return absl::OkStatus();
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;  // Null when use_regex is false.
};

enum class PrependScheme { kAlways, kFirst, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme,
                        std::unique_ptr<Regex> split)
      : replacement_(std::move(replacement)),
        scheme_(scheme),
        split_(std::move(split)) {}
  absl::Status PreTokenize(std::vector<PreToken>* words) const override {
    std::string replaced;
    for (PreToken& word : *words) {
      replaced.clear();
      const bool prepend =
          (scheme_ == PrependScheme::kAlways ||
           (scheme_ == PrependScheme::kFirst && word.at_start)) &&
          !absl::StartsWith(word.text, replacement_) &&
          !absl::StartsWith(word.text, " ");
      if (prepend) replaced = replacement_;
      for (char c : word.text) {
        if (c == ' ') {
          replaced += replacement_;
        } else {
          replaced.push_back(c);
        }
      }
      std::swap(word.text, replaced);
    }
    if (split_ != nullptr) {
      return SplitWords(*split_, SplitBehavior::kMergedWithNext, false, words);
    }
    return absl::OkStatus();
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  std::unique_ptr<Regex> split_;  // Null when split is false.
};

absl::StatusOr<SplitBehavior> ParseBehavior(const nlohmann::json& spec,
                                            absl::string_view where,
                                            const char* fallback) {
  absl::StatusOr<std::string> name =
      SpecString(spec, "behavior", where, fallback);
  if (!name.ok()) return name.status();
  if (*name == "Removed") return SplitBehavior::kRemoved;
  if (*name == "Isolated") return SplitBehavior::kIsolated;
  if (*name == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*name == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*name == "Contiguous") return SplitBehavior::kContiguous;
  return SpecError(where,
                   absl::StrCat("unknown split behavior \"", *name, "\""));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> RegexSplit(
    absl::string_view pattern, SplitBehavior behavior, bool invert,
    absl::string_view where) {
  absl::StatusOr<std::unique_ptr<Regex>> regex = Regex::Compile(pattern);
  if (!regex.ok()) return SpecError(where, regex.status().message());
  return std::make_unique<SplitPreTokenizer>(*std::move(regex), behavior,
                                             invert);
}

}  // namespace

std::vector<Range> SplitRanges(size_t size, const std::vector<Range>& matches,
                               SplitBehavior behavior, bool invert) {
  // The whole text as alternating pieces, each marked delimiter or not.
  std::vector<std::pair<Range, bool>> pieces;
  pieces.reserve(matches.size() * 2 + 1);
  size_t last = 0;
  for (const Range& match : matches) {
    if (match.first > last) pieces.push_back({{last, match.first}, invert});
    pieces.push_back({match, !invert});
    last = match.second;
  }
  if (last < size || pieces.empty()) pieces.push_back({{last, size}, invert});

  std::vector<Range> out;
  out.reserve(pieces.size());
  bool previous_delimiter = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const auto& [range, delimiter] : pieces) {
        if (!delimiter) out.push_back(range);
      }
      break;
    case SplitBehavior::kIsolated:
      for (const auto& piece : pieces) out.push_back(piece.first);
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const auto& [range, delimiter] : pieces) {
        if (delimiter && !previous_delimiter && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_delimiter = delimiter;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (size_t i = pieces.size(); i-- > 0;) {
        const auto& [range, delimiter] = pieces[i];
        if (delimiter && !previous_delimiter && !out.empty()) {
          out.back().first = range.first;
        } else {
          out.push_back(range);
        }
        previous_delimiter = delimiter;
      }
      std::reverse(out.begin(), out.end());
      break;
    case SplitBehavior::kContiguous:
      for (size_t i = 0; i < pieces.size(); ++i) {
        const auto& [range, delimiter] = pieces[i];
        if (i > 0 && delimiter == previous_delimiter && !out.empty()) {
          out.back().second = range.second;
        } else {
          out.push_back(range);
        }
        previous_delimiter = delimiter;
      }
      break;
  }
  std::vector<Range> nonempty;
  nonempty.reserve(out.size());
  for (const Range& range : out) {
    if (range.second > range.first) nonempty.push_back(range);
  }
  return nonempty;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> MakePreTokenizer(
    const nlohmann::json& spec, absl::string_view where) {
  if (spec.is_null()) return nullptr;
  absl::StatusOr<std::string> type = SpecType(spec, where);
  if (!type.ok()) return type.status();
  if (*type == "Sequence") {
    const auto it = spec.find("pretokenizers");
    if (it == spec.end() || !it->is_array()) {
      return SpecError(where, "\"pretokenizers\" must be an array");
    }
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      absl::StatusOr<std::unique_ptr<PreTokenizer>> part = MakePreTokenizer(
          (*it)[i], absl::StrCat(where, ".pretokenizers[", i, "]"));
      if (!part.ok()) return part.status();
      if (*part != nullptr) parts.push_back(*std::move(part));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (*type == "Split") {
    absl::StatusOr<std::unique_ptr<Regex>> regex =
        SpecPattern(spec, "pattern", where);
    if (!regex.ok()) return regex.status();
    absl::StatusOr<SplitBehavior> behavior =
        ParseBehavior(spec, where, nullptr);
    if (!behavior.ok()) return behavior.status();
    absl::StatusOr<bool> invert = SpecBool(spec, "invert", where, false);
    if (!invert.ok()) return invert.status();
    return std::make_unique<SplitPreTokenizer>(*std::move(regex), *behavior,
                                               *invert);
  }
  if (*type == "ByteLevel") {
    absl::StatusOr<bool> prefix =
        SpecBool(spec, "add_prefix_space", where, true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<bool> use_regex = SpecBool(spec, "use_regex", where, true);
    if (!use_regex.ok()) return use_regex.status();
    std::unique_ptr<Regex> regex;
    if (*use_regex) {
      absl::StatusOr<std::unique_ptr<Regex>> compiled =
          Regex::Compile(kGpt2Pattern);
      if (!compiled.ok()) return compiled.status();
      regex = *std::move(compiled);
    }
    return std::make_unique<ByteLevelPreTokenizer>(*prefix, std::move(regex));
  }
  if (*type == "Metaspace") {
    absl::StatusOr<std::string> replacement =
        SpecChar(spec, "replacement", where, "\xE2\x96\x81");
    if (!replacement.ok()) return replacement.status();
    // Older files say add_prefix_space; newer ones prepend_scheme.
    absl::StatusOr<bool> prefix =
        SpecBool(spec, "add_prefix_space", where, true);
    if (!prefix.ok()) return prefix.status();
    absl::StatusOr<std::string> scheme_name =
        SpecString(spec, "prepend_scheme", where, *prefix ? "always" : "never");
    if (!scheme_name.ok()) return scheme_name.status();
    PrependScheme scheme;
    if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else {
      return SpecError(
          where, absl::StrCat("unknown prepend_scheme \"", *scheme_name, "\""));
    }
    absl::StatusOr<bool> split = SpecBool(spec, "split", where, true);
    if (!split.ok()) return split.status();
    std::unique_ptr<Regex> split_regex;
    if (*split) {
      absl::StatusOr<std::unique_ptr<Regex>> compiled =
          Regex::Compile(*replacement, /*literal=*/true);
      if (!compiled.ok()) return compiled.status();
      split_regex = *std::move(compiled);
    }
    return std::make_unique<MetaspacePreTokenizer>(
        *std::move(replacement), scheme, std::move(split_regex));
  }
  if (*type == "Digits") {
    absl::StatusOr<bool> individual =
        SpecBool(spec, "individual_digits", where, false);
    if (!individual.ok()) return individual.status();
    return RegexSplit(*individual ? R"(\p{N})" : R"(\p{N}+)",
                      SplitBehavior::kIsolated, false, where);
  }
  if (*type == "Punctuation") {
    absl::StatusOr<SplitBehavior> behavior =
        ParseBehavior(spec, where, "Isolated");
    if (!behavior.ok()) return behavior.status();
    return RegexSplit(R"(\p{P}|[!-/:-@\[-`{-~])", *behavior, false, where);
  }
  if (*type == "Whitespace") {
    return RegexSplit(R"(\w+|[^\w\s]+)", SplitBehavior::kRemoved, true, where);
  }
  if (*type == "WhitespaceSplit") {
    return RegexSplit(R"(\s+)", SplitBehavior::kRemoved, false, where);
  }
  if (*type == "CharDelimiterSplit") {
    absl::StatusOr<std::string> delimiter =
        SpecChar(spec, "delimiter", where, nullptr);
    if (!delimiter.ok()) return delimiter.status();
    absl::StatusOr<std::unique_ptr<Regex>> regex =
        Regex::Compile(*delimiter, /*literal=*/true);
    if (!regex.ok()) return regex.status();
    return std::make_unique<SplitPreTokenizer>(*std::move(regex),
                                               SplitBehavior::kRemoved, false);
  }
  return UnsupportedType(where, "pre-tokenizer", *type);
}

}  // namespace longctx
