#include "model/hf_tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "model/hf_tokenizer/spec.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

// ParseTemplate reads a TemplateProcessing's "single" template into the ids
// before and after the sequence.
absl::Status ParseTemplate(const nlohmann::json& spec, absl::string_view where,
                           std::vector<int32_t>* prefix,
                           std::vector<int32_t>* suffix) {
  const auto single = spec.find("single");
  if (single == spec.end() || !single->is_array()) {
    return SpecError(where, "\"single\" must be an array");
  }
  const auto specials = spec.find("special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const std::string at = absl::StrCat(where, ".single[", i, "]");
    const nlohmann::json& item = (*single)[i];
    if (item.is_object() && item.contains("Sequence")) {
      if (seen_sequence) return SpecError(at, "a second sequence");
      seen_sequence = true;
      continue;
    }
    if (!item.is_object() || !item.contains("SpecialToken")) {
      return SpecError(
          at, "must be {\"Sequence\": ...} or {\"SpecialToken\": ...}");
    }
    absl::StatusOr<std::string> name =
        SpecString(item["SpecialToken"], "id", at);
    if (!name.ok()) return name.status();
    if (specials == spec.end() || !specials->is_object() ||
        !specials->contains(*name)) {
      return SpecError(at, absl::StrCat("special token \"", *name,
                                        "\" is not in \"special_tokens\""));
    }
    const nlohmann::json& ids = (*specials)[*name]["ids"];
    if (!ids.is_array()) {
      return SpecError(where, absl::StrCat("special_tokens[\"", *name,
                                           "\"].ids must be an array"));
    }
    for (const nlohmann::json& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
          id.get<int64_t>() >= (int64_t{1} << 24)) {
        return SpecError(where, absl::StrCat("special_tokens[\"", *name,
                                             "\"].ids holds a bad id"));
      }
      (seen_sequence ? suffix : prefix)->push_back(id.get<int32_t>());
    }
  }
  if (!seen_sequence) return SpecError(where, "\"single\" has no sequence");
  return absl::OkStatus();
}

absl::Status ParsePostProcessor(const nlohmann::json& spec,
                                absl::string_view where,
                                std::vector<int32_t>* prefix,
                                std::vector<int32_t>* suffix) {
  if (spec.is_null()) return absl::OkStatus();
  absl::StatusOr<std::string> type = SpecType(spec, where);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return absl::OkStatus();  // Offsets only.
  if (*type == "TemplateProcessing") {
    return ParseTemplate(spec, where, prefix, suffix);
  }
  if (*type == "Sequence") {
    const auto it = spec.find("processors");
    if (it == spec.end() || !it->is_array()) {
      return SpecError(where, "\"processors\" must be an array");
    }
    for (size_t i = 0; i < it->size(); ++i) {
      absl::Status status = ParsePostProcessor(
          (*it)[i], absl::StrCat(where, ".processors[", i, "]"), prefix,
          suffix);
      if (!status.ok()) return status;
    }
    return absl::OkStatus();
  }
  return UnsupportedType(where, "post-processor", *type);
}

}  // namespace

// Words seen in one Encode call and their ids: long documents repeat their
// words, and a word's ids do not depend on its neighbours.
struct HfTokenizer::WordCache {
  static constexpr size_t kMaxWordBytes = 64;
  static constexpr size_t kMaxEntries = 1 << 16;
  absl::flat_hash_map<std::string, std::pair<uint32_t, uint32_t>> index;
  std::vector<int32_t> ids;  // The cached words' ids, back to back.
};

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::FromJson(
    const nlohmann::json& spec) {
  if (!spec.is_object()) {
    return absl::InvalidArgumentError("tokenizer.json must hold an object");
  }
  std::unique_ptr<HfTokenizer> tokenizer(new HfTokenizer());
  const auto field = [&](const char* key) -> const nlohmann::json& {
    static const nlohmann::json* const null = new nlohmann::json();
    const auto it = spec.find(key);
    return it == spec.end() ? *null : *it;
  };
  if (field("model").is_null()) {
    return absl::InvalidArgumentError("tokenizer.json has no \"model\"");
  }
  absl::StatusOr<std::unique_ptr<BpeModel>> model =
      BpeModel::Create(field("model"), "model");
  if (!model.ok()) return model.status();
  tokenizer->model_ = *std::move(model);
  absl::StatusOr<AddedVocabulary> added =
      AddedVocabulary::Create(field("added_tokens"), "added_tokens");
  if (!added.ok()) return added.status();
  tokenizer->added_ = *std::move(added);
  absl::StatusOr<std::unique_ptr<Normalizer>> normalizer =
      MakeNormalizer(field("normalizer"), "normalizer");
  if (!normalizer.ok()) return normalizer.status();
  tokenizer->normalizer_ = *std::move(normalizer);
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre_tokenizer =
      MakePreTokenizer(field("pre_tokenizer"), "pre_tokenizer");
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  tokenizer->pre_tokenizer_ = *std::move(pre_tokenizer);
  absl::StatusOr<std::unique_ptr<Decoder>> decoder =
      MakeDecoder(field("decoder"), "decoder");
  if (!decoder.ok()) return decoder.status();
  tokenizer->decoder_ = *std::move(decoder);
  const nlohmann::json& decoder_spec = field("decoder");
  tokenizer->added_bypass_decoder_ =
      decoder_spec.is_object() && decoder_spec.value("type", "") == "ByteLevel";
  absl::Status status =
      ParsePostProcessor(field("post_processor"), "post_processor",
                         &tokenizer->prefix_, &tokenizer->suffix_);
  if (!status.ok()) return status;

  tokenizer->id_limit_ = tokenizer->model_->id_limit();
  for (const AddedToken& token : tokenizer->added_.tokens()) {
    tokenizer->id_limit_ = std::max(tokenizer->id_limit_, token.id + 1);
    const std::string* entry = tokenizer->model_->IdToToken(token.id);
    if (entry != nullptr && *entry != token.content) {
      return absl::InvalidArgumentError(
          absl::StrCat("added_tokens: id ", token.id, " is \"", token.content,
                       "\" but the model's vocab has \"", *entry, "\" there"));
    }
  }
  for (const std::vector<int32_t>* ids :
       {&tokenizer->prefix_, &tokenizer->suffix_}) {
    for (int32_t id : *ids) {
      if (tokenizer->IdToToken(id) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(
            "post_processor: special token id ", id, " is not in the vocab"));
      }
    }
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> HfTokenizer::Encode(
    absl::string_view text, bool add_special_tokens) const {
  std::string sanitized;
  if (!IsValidUtf8(text)) {
    sanitized = SanitizeUtf8(text);
    text = sanitized;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 8);
  if (add_special_tokens) ids = prefix_;
  WordCache cache;
  absl::Status status;
  added_.Split(
      text, /*normalized=*/false,
      [&](absl::string_view piece) {
        if (status.ok()) {
          status =
              EncodeSegment(piece, piece.data() == text.data(), &cache, &ids);
        }
      },
      [&](int32_t id) { ids.push_back(id); });
  if (!status.ok()) return status;
  if (add_special_tokens) ids.insert(ids.end(), suffix_.begin(), suffix_.end());
  return ids;
}

absl::Status HfTokenizer::EncodeSegment(absl::string_view text, bool at_start,
                                        WordCache* cache,
                                        std::vector<int32_t>* ids) const {
  if (normalizer_ == nullptr && !added_.HasNormalized()) {
    return EncodeWords(text, at_start, cache, ids);
  }
  std::string normalized(text);
  if (normalizer_ != nullptr) {
    absl::Status status = normalizer_->Normalize(&normalized);
    if (!status.ok()) return status;
  }
  absl::Status status;
  added_.Split(
      normalized, /*normalized=*/true,
      [&](absl::string_view piece) {
        if (status.ok()) {
          status = EncodeWords(
              piece, at_start && piece.data() == normalized.data(), cache, ids);
        }
      },
      [&](int32_t id) { ids->push_back(id); });
  return status;
}

absl::Status HfTokenizer::EncodeWords(absl::string_view text, bool at_start,
                                      WordCache* cache,
                                      std::vector<int32_t>* ids) const {
  std::vector<PreToken> words;
  words.push_back(PreToken{std::string(text), at_start});
  if (pre_tokenizer_ != nullptr) {
    absl::Status status = pre_tokenizer_->PreTokenize(&words);
    if (!status.ok()) return status;
  }
  std::vector<absl::string_view> parts;
  for (const PreToken& word : words) {
    if (word.text.empty()) continue;
    if (word.text.size() <= WordCache::kMaxWordBytes) {
      EncodeWord(word.text, cache, ids);
      continue;
    }
    // A long word (a whole text, with Metaspace's layout) in parts whose
    // ids are the word's, so that the cache serves them.
    parts.clear();
    model_->SplitIndependent(word.text, &parts);
    for (absl::string_view part : parts) EncodeWord(part, cache, ids);
  }
  return absl::OkStatus();
}

void HfTokenizer::EncodeWord(absl::string_view word, WordCache* cache,
                             std::vector<int32_t>* ids) const {
  if (word.size() > WordCache::kMaxWordBytes) {
    model_->Tokenize(word, ids);
    return;
  }
  const auto it = cache->index.find(word);
  if (it != cache->index.end()) {
    const auto [offset, count] = it->second;
    ids->insert(ids->end(), cache->ids.begin() + offset,
                cache->ids.begin() + offset + count);
    return;
  }
  const size_t start = ids->size();
  model_->Tokenize(word, ids);
  if (cache->index.size() < WordCache::kMaxEntries) {
    const uint32_t offset = static_cast<uint32_t>(cache->ids.size());
    cache->ids.insert(cache->ids.end(), ids->begin() + start, ids->end());
    cache->index.emplace(
        word,
        std::make_pair(offset, static_cast<uint32_t>(ids->size() - start)));
  }
}

std::string HfTokenizer::Decode(absl::Span<const int32_t> ids,
                                bool skip_special_tokens) const {
  std::string text;
  std::vector<std::string> run;
  const auto flush = [&] {
    if (run.empty()) return;
    if (decoder_ != nullptr) decoder_->Decode(&run);
    for (const std::string& piece : run) text += piece;
    run.clear();
  };
  for (int32_t id : ids) {
    const AddedToken* added = added_.Find(id);
    if (added != nullptr) {
      if (added->special && skip_special_tokens) continue;
      if (added_bypass_decoder_) {
        flush();
        text += added->content;
      } else {
        run.push_back(added->content);
      }
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token != nullptr) run.push_back(*token);
  }
  flush();
  return text;
}

std::optional<int32_t> HfTokenizer::TokenToId(absl::string_view token) const {
  const AddedToken* added = added_.FindContent(token);
  if (added != nullptr) return added->id;
  return model_->TokenToId(token);
}

const std::string* HfTokenizer::IdToToken(int32_t id) const {
  const AddedToken* added = added_.Find(id);
  if (added != nullptr) return &added->content;
  return model_->IdToToken(id);
}

bool HfTokenizer::IsSpecial(int32_t id) const {
  const AddedToken* added = added_.Find(id);
  return added != nullptr && added->special;
}

}  // namespace longctx
