#include "model/hf_tokenizer/bpe_model.h"

#include <algorithm>
#include <queue>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/hf_tokenizer/spec.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

// Vocabularies are far smaller; the bound keeps a hostile file's ids from
// sizing the id table.
constexpr int64_t kMaxId = int64_t{1} << 24;
constexpr absl::string_view kMetaspace = "\xE2\x96\x81";  // "▁"

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    const nlohmann::json& spec, absl::string_view where) {
  absl::StatusOr<std::string> type = SpecType(spec, where);
  if (!type.ok()) return type.status();
  if (*type != "BPE") return UnsupportedType(where, "model", *type);
  std::unique_ptr<BpeModel> model(new BpeModel());
  const auto dropout = spec.find("dropout");
  if (dropout != spec.end() && !dropout->is_null() &&
      !(dropout->is_number() && dropout->get<double>() == 0.0)) {
    return SpecError(where,
                     "BPE dropout is not supported (it makes tokenization "
                     "random)");
  }
  absl::StatusOr<bool> flag = SpecBool(spec, "byte_fallback", where, false);
  if (!flag.ok()) return flag.status();
  model->byte_fallback_ = *flag;
  if (!(flag = SpecBool(spec, "fuse_unk", where, false)).ok()) {
    return flag.status();
  }
  model->fuse_unk_ = *flag;
  if (!(flag = SpecBool(spec, "ignore_merges", where, false)).ok()) {
    return flag.status();
  }
  model->ignore_merges_ = *flag;
  absl::StatusOr<std::string> text =
      SpecString(spec, "continuing_subword_prefix", where, "");
  if (!text.ok()) return text.status();
  model->continuing_subword_prefix_ = *std::move(text);
  if (!(text = SpecString(spec, "end_of_word_suffix", where, "")).ok()) {
    return text.status();
  }
  model->end_of_word_suffix_ = *std::move(text);

  const auto vocab = spec.find("vocab");
  if (vocab == spec.end() || !vocab->is_object()) {
    return SpecError(where, "\"vocab\" must be an object of token: id");
  }
  model->vocab_.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
        id.get<int64_t>() >= kMaxId) {
      return SpecError(where,
                       absl::StrCat("vocab[\"", SanitizeUtf8(token),
                                    "\"] must be an id in [0, ", kMaxId, ")"));
    }
    if (!IsValidUtf8(token)) {
      return SpecError(where, "a vocab entry is not UTF-8");
    }
    const int32_t value = static_cast<int32_t>(id.get<int64_t>());
    if (static_cast<size_t>(value) >= model->tokens_.size()) {
      model->tokens_.resize(value + 1);
      model->has_token_.resize(value + 1, false);
    }
    if (model->has_token_[value]) {
      return SpecError(
          where, absl::StrCat("vocab id ", value, " is used by \"",
                              model->tokens_[value], "\" and \"", token, "\""));
    }
    model->has_token_[value] = true;
    model->tokens_[value] = token;
    model->vocab_.emplace(token, value);
  }

  const auto merges = spec.find("merges");
  if (merges == spec.end() || !merges->is_array()) {
    return SpecError(where, "\"merges\" must be an array");
  }
  model->merges_.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const nlohmann::json& merge = (*merges)[i];
    std::string left, right;
    if (merge.is_string()) {
      const std::string line = merge.get<std::string>();
      const size_t space = line.find(' ');
      if (space == std::string::npos ||
          line.find(' ', space + 1) != std::string::npos) {
        return SpecError(where,
                         absl::StrCat("merges[", i, "] \"", SanitizeUtf8(line),
                                      "\" is not two tokens"));
      }
      left = line.substr(0, space);
      right = line.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() &&
               merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return SpecError(
          where, absl::StrCat("merges[", i, "] must be \"a b\" or [a, b]"));
    }
    const auto a = model->vocab_.find(left), b = model->vocab_.find(right);
    if (a == model->vocab_.end() || b == model->vocab_.end()) {
      return SpecError(
          where,
          absl::StrCat("merges[", i, "]: \"",
                       SanitizeUtf8(a == model->vocab_.end() ? left : right),
                       "\" is not in the vocab"));
    }
    absl::string_view tail = right;
    if (!model->continuing_subword_prefix_.empty() &&
        absl::StartsWith(tail, model->continuing_subword_prefix_)) {
      tail.remove_prefix(model->continuing_subword_prefix_.size());
    }
    const std::string joined = absl::StrCat(left, tail);
    const auto result = model->vocab_.find(joined);
    if (result == model->vocab_.end()) {
      return SpecError(
          where, absl::StrCat("merges[", i, "]: the result \"",
                              SanitizeUtf8(joined), "\" is not in the vocab"));
    }
    // A pair listed twice keeps its first (lowest) rank.
    model->merges_.emplace(PairKey(a->second, b->second),
                           Merge{static_cast<int32_t>(i), result->second});
  }

  absl::StatusOr<std::string> unk = SpecString(spec, "unk_token", where, "");
  if (!unk.ok()) return unk.status();
  if (!unk->empty()) {
    const auto it = model->vocab_.find(*unk);
    if (it == model->vocab_.end()) {
      return SpecError(
          where, absl::StrCat("unk_token \"", *unk, "\" is not in the vocab"));
    }
    model->unk_id_ = it->second;
  }
  // Cuts before "▁" are safe when no entry has one after another character
  // (and characters are looked up without position-dependent affixes, and
  // whole words are not looked up first).
  model->cut_before_space_ = model->continuing_subword_prefix_.empty() &&
                             model->end_of_word_suffix_.empty() &&
                             !model->ignore_merges_ &&
                             model->vocab_.contains(kMetaspace);
  for (const auto& [token, id] : model->vocab_) {
    if (!model->cut_before_space_) break;
    const absl::string_view entry = token;
    for (size_t at = entry.find(kMetaspace, 1); at != absl::string_view::npos;
         at = entry.find(kMetaspace, at + 1)) {
      if (at < kMetaspace.size() ||
          token.compare(at - kMetaspace.size(), kMetaspace.size(),
                        kMetaspace.data(), kMetaspace.size()) != 0) {
        model->cut_before_space_ = false;
        break;
      }
    }
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = model->vocab_.find(absl::StrFormat("<0x%02X>", b));
    model->byte_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  const auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_token_[id]) return nullptr;
  return &tokens_[id];
}

void BpeModel::SplitIndependent(absl::string_view word,
                                std::vector<absl::string_view>* parts) const {
  if (!cut_before_space_) {
    parts->push_back(word);
    return;
  }
  size_t start = 0;
  for (size_t at = word.find(kMetaspace, 1); at != absl::string_view::npos;
       at = word.find(kMetaspace, at + kMetaspace.size())) {
    // Not between two "▁": entries such as "▁▁" may join those.
    if (at >= kMetaspace.size() &&
        word.substr(at - kMetaspace.size(), kMetaspace.size()) == kMetaspace) {
      continue;
    }
    if (at > start) parts->push_back(word.substr(start, at - start));
    start = at;
  }
  parts->push_back(word.substr(start));
}

void BpeModel::AddCharacterIds(absl::string_view word,
                               std::vector<int32_t>* ids) const {
  bool pending_unk = false;  // An unknown character not yet added.
  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8Char(word.substr(i), &cp);
    const absl::string_view character = word.substr(i, n);
    const bool first = i == 0, last = i + n == word.size();
    i += n;
    absl::string_view lookup = character;
    if ((!first && !continuing_subword_prefix_.empty()) ||
        (last && !end_of_word_suffix_.empty())) {
      piece.clear();
      if (!first) piece = continuing_subword_prefix_;
      piece.append(character.data(), character.size());
      if (last) piece.append(end_of_word_suffix_);
      lookup = piece;
    }
    const auto it = vocab_.find(lookup);
    if (it != vocab_.end()) {
      if (pending_unk) ids->push_back(*unk_id_);
      pending_unk = false;
      ids->push_back(it->second);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : character)
        all = all && byte_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : character) {
          ids->push_back(byte_ids_[static_cast<unsigned char>(c)]);
        }
        continue;
      }
    }
    if (!unk_id_.has_value()) continue;  // No unknown token: dropped.
    if (pending_unk && !fuse_unk_) ids->push_back(*unk_id_);
    pending_unk = true;
  }
  if (pending_unk) ids->push_back(*unk_id_);
}

void BpeModel::MergeAll(std::vector<int32_t>* ids) const {
  const int n = static_cast<int>(ids->size());
  if (n < 2 || merges_.empty()) return;
  struct Candidate {
    int32_t rank, left, left_id, right_id, result;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : left > other.left;
    }
  };
  std::vector<int32_t>& id = *ids;
  std::vector<int32_t> next(n), prev(n);
  for (int i = 0; i < n; ++i) {
    next[i] = i + 1 < n ? i + 1 : -1;
    prev[i] = i - 1;
  }
  std::vector<Candidate> storage;
  storage.reserve(n);
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap(
      std::greater<>(), std::move(storage));
  const auto consider = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    const int right = next[left];
    const auto it = merges_.find(PairKey(id[left], id[right]));
    if (it == merges_.end()) return;
    heap.push(Candidate{it->second.rank, left, id[left], id[right],
                        it->second.result});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const int left = top.left;
    // Stale when either symbol changed since the candidate was made (a
    // symbol's id changes only when it absorbs its right neighbour).
    if (id[left] != top.left_id || next[left] < 0 ||
        id[next[left]] != top.right_id) {
      continue;
    }
    const int right = next[left];
    id[left] = top.result;
    id[right] = -1;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    consider(prev[left]);
    consider(left);
  }
  int out = 0;
  for (int i = 0; i >= 0; i = next[i]) id[out++] = id[i];
  ids->resize(out);
}

void BpeModel::Tokenize(absl::string_view word,
                        std::vector<int32_t>* ids) const {
  if (ignore_merges_) {
    const auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const size_t start = ids->size();
  std::vector<int32_t> symbols;
  AddCharacterIds(word, &symbols);
  MergeAll(&symbols);
  ids->insert(ids->begin() + start, symbols.begin(), symbols.end());
}

}  // namespace longctx
