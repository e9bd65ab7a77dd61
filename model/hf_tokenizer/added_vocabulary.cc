#include "model/hf_tokenizer/added_vocabulary.h"

#include "absl/strings/str_cat.h"
#include "model/hf_tokenizer/normalizer.h"
#include "model/hf_tokenizer/spec.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

// The character that ends just before `end` (0 at the start of the text).
char32_t CharBefore(absl::string_view text, size_t end) {
  if (end == 0) return 0;
  size_t start = end - 1;
  while (start > 0 &&
         (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
    --start;
  }
  char32_t cp;
  DecodeUtf8Char(text.substr(start, end - start), &cp);
  return cp;
}

char32_t CharAt(absl::string_view text, size_t start) {
  if (start >= text.size()) return 0;
  char32_t cp;
  DecodeUtf8Char(text.substr(start), &cp);
  return cp;
}

// A word character for single_word: letters, digits and '_' (ASCII, plus
// anything non-ASCII that is not whitespace, which is close to Unicode's
// alphanumerics for the texts that matter here).
bool IsWordChar(char32_t cp) {
  if (cp == 0) return false;
  if (cp < 0x80) {
    return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           (cp >= '0' && cp <= '9') || cp == '_';
  }
  return !IsUnicodeWhitespace(cp);
}

}  // namespace

absl::StatusOr<AddedVocabulary> AddedVocabulary::Create(
    const nlohmann::json& spec, absl::string_view where) {
  AddedVocabulary vocabulary;
  if (spec.is_null()) return vocabulary;
  if (!spec.is_array()) return SpecError(where, "must be an array");
  for (size_t i = 0; i < spec.size(); ++i) {
    const std::string at = absl::StrCat(where, "[", i, "]");
    const nlohmann::json& entry = spec[i];
    AddedToken token;
    absl::StatusOr<int64_t> id = SpecInt(entry, "id", at, -1);
    if (!id.ok()) return id.status();
    if (*id < 0 || *id >= (int64_t{1} << 24)) {
      return SpecError(at, "\"id\" must be an id in [0, 16777216)");
    }
    token.id = static_cast<int32_t>(*id);
    absl::StatusOr<std::string> content = SpecString(entry, "content", at);
    if (!content.ok()) return content.status();
    if (content->empty()) return SpecError(at, "\"content\" is empty");
    token.content = *std::move(content);
    absl::StatusOr<bool> flag = SpecBool(entry, "special", at, false);
    if (!flag.ok()) return flag.status();
    token.special = *flag;
    // The Rust library's default: special tokens are matched on raw text.
    if (!(flag = SpecBool(entry, "normalized", at, !token.special)).ok()) {
      return flag.status();
    }
    token.normalized = *flag;
    if (!(flag = SpecBool(entry, "single_word", at, false)).ok()) {
      return flag.status();
    }
    token.single_word = *flag;
    if (!(flag = SpecBool(entry, "lstrip", at, false)).ok()) {
      return flag.status();
    }
    token.lstrip = *flag;
    if (!(flag = SpecBool(entry, "rstrip", at, false)).ok()) {
      return flag.status();
    }
    token.rstrip = *flag;
    const int32_t index = static_cast<int32_t>(vocabulary.tokens_.size());
    if (!vocabulary.by_id_.emplace(token.id, index).second) {
      return SpecError(at, absl::StrCat("id ", token.id, " is added twice"));
    }
    if (!vocabulary.by_content_.emplace(token.content, index).second) {
      return SpecError(at,
                       absl::StrCat("\"", token.content, "\" is added twice"));
    }
    vocabulary.tokens_.push_back(std::move(token));
    vocabulary.Insert(&vocabulary.tries_[vocabulary.tokens_.back().normalized],
                      index);
  }
  return vocabulary;
}

void AddedVocabulary::Insert(Trie* trie, int32_t index) {
  if (trie->nodes.empty()) trie->nodes.emplace_back();
  const std::string& content = tokens_[index].content;
  trie->first_byte[static_cast<unsigned char>(content[0])] = true;
  int32_t node = 0;
  for (char c : content) {
    const unsigned char byte = static_cast<unsigned char>(c);
    auto it = trie->nodes[node].children.find(byte);
    if (it == trie->nodes[node].children.end()) {
      const int32_t child = static_cast<int32_t>(trie->nodes.size());
      trie->nodes[node].children.emplace(byte, child);
      trie->nodes.emplace_back();
      node = child;
    } else {
      node = it->second;
    }
  }
  trie->nodes[node].token = index;
}

void AddedVocabulary::Split(absl::string_view text, bool normalized,
                            absl::FunctionRef<void(absl::string_view)> on_text,
                            absl::FunctionRef<void(int32_t)> on_token) const {
  const Trie& trie = tries_[normalized ? 1 : 0];
  if (trie.nodes.empty()) {
    if (!text.empty()) on_text(text);
    return;
  }
  size_t emitted = 0;  // Text before this is handed out.
  size_t i = 0;
  while (i < text.size()) {
    if (!trie.first_byte[static_cast<unsigned char>(text[i])]) {
      ++i;
      continue;
    }
    // The longest content starting at i.
    int32_t node = 0, found = -1;
    size_t found_end = 0;
    for (size_t j = i; j < text.size(); ++j) {
      const auto& children = trie.nodes[node].children;
      auto it = children.find(static_cast<unsigned char>(text[j]));
      if (it == children.end()) break;
      node = it->second;
      if (trie.nodes[node].token >= 0) {
        const AddedToken& candidate = tokens_[trie.nodes[node].token];
        if (!candidate.single_word || (!IsWordChar(CharBefore(text, i)) &&
                                       !IsWordChar(CharAt(text, j + 1)))) {
          found = trie.nodes[node].token;
          found_end = j + 1;
        }
      }
    }
    if (found < 0) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens_[found];
    size_t start = i, end = found_end;
    if (token.lstrip) {
      while (start > emitted) {
        const char32_t cp = CharBefore(text, start);
        if (!IsUnicodeWhitespace(cp)) break;
        size_t back = start - 1;
        while (back > emitted &&
               (static_cast<unsigned char>(text[back]) & 0xC0) == 0x80) {
          --back;
        }
        start = back;
      }
    }
    if (token.rstrip) {
      while (end < text.size()) {
        char32_t cp;
        const size_t n = DecodeUtf8Char(text.substr(end), &cp);
        if (!IsUnicodeWhitespace(cp)) break;
        end += n;
      }
    }
    if (start > emitted) on_text(text.substr(emitted, start - emitted));
    on_token(token.id);
    emitted = end;
    i = end;
  }
  if (emitted < text.size()) on_text(text.substr(emitted));
}

const AddedToken* AddedVocabulary::Find(int32_t id) const {
  const auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::FindContent(
    absl::string_view content) const {
  const auto it = by_content_.find(content);
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace longctx
