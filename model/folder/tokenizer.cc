#include "model/folder/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/folder/io_util.h"
#include "model/folder/sentencepiece_model.h"
#include "model/hf_tokenizer/hf_tokenizer.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

constexpr absl::string_view kReplacement = kUtf8Replacement;
// A UTF-8 character has at most 4 bytes, so at most 4 tokens can be needed
// to complete one; text held back longer than that is not going to be.
constexpr int kMaxHeldTokens = 4;
// The detokenizer's window is cut back to one token beyond this size.
constexpr size_t kMaxWindow = 16;

size_t ValidPrefixLength(absl::string_view s, bool* complete) {
  return ValidUtf8PrefixLength(s, complete);
}

// IncompleteTailLength returns the length of the end of `s` that may still
// become text when more bytes come: the valid beginning of a character, or
// replacement characters (a library's stand-in for such bytes).
size_t IncompleteTailLength(absl::string_view s) {
  size_t tail = 0;
  while (s.size() - tail >= kReplacement.size() &&
         s.substr(s.size() - tail - kReplacement.size(), kReplacement.size()) ==
             kReplacement) {
    tail += kReplacement.size();
  }
  if (tail > 0) return tail;
  // The last character starts at most 3 bytes before the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // A continuation byte.
    bool complete = false;
    const size_t n = ValidPrefixLength(s.substr(s.size() - back), &complete);
    return n == back && !complete ? back : 0;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> Tokenizer::Decode(
    absl::Span<const int32_t> ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                       vocab_size(), ")"));
    }
  }
  return SanitizeUtf8(DecodeRaw(ids));
}

std::unique_ptr<IncrementalDetokenizer> Tokenizer::NewDetokenizer() const {
  return std::make_unique<IncrementalDetokenizer>(this);
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer)
    : tokenizer_(tokenizer) {}

std::string IncrementalDetokenizer::DecodeWindow() const {
  std::string text;
  size_t run_start = 0;
  for (size_t i = 0; i <= window_.size(); ++i) {
    if (i < window_.size() && window_[i] >= 0) continue;
    if (i > run_start) {
      text += tokenizer_->DecodeRaw(
          absl::MakeConstSpan(window_).subspan(run_start, i - run_start));
    }
    if (i < window_.size())
      text.append(kReplacement.data(), kReplacement.size());
    run_start = i + 1;
  }
  return text;
}

std::string IncrementalDetokenizer::Push(absl::Span<const int32_t> ids) {
  std::string out;
  // One id at a time, so that held-back text is counted in tokens.
  for (int32_t id : ids) {
    window_.push_back(id >= 0 && id < tokenizer_->vocab_size() ? id : -1);
    const std::string text = DecodeWindow();
    const size_t start = std::min(emitted_, text.size());
    size_t tail = IncompleteTailLength(absl::string_view(text).substr(start));
    if (tail > 0) {
      // Text before the tail became final: the tail started with this token
      // (a tail is one character's beginning, which no earlier token could
      // have started without being part of the previous tail).
      held_tokens_ = text.size() - tail > start ? 1 : held_tokens_ + 1;
      if (held_tokens_ >= kMaxHeldTokens) tail = 0;  // Not going to complete.
    }
    out += SanitizeUtf8(
        absl::string_view(text).substr(start, text.size() - tail - start));
    emitted_ = text.size() - tail;
    if (tail == 0) held_tokens_ = 0;
    if (window_.size() > kMaxWindow) RestartWindow(text, tail);
  }
  return out;
}

void IncrementalDetokenizer::RestartWindow(absl::string_view text,
                                           size_t tail) {
  // Keep the tokens of the held tail, and one before them as context (so
  // that e.g. SentencePiece spaces after it come out right), when they decode
  // on their own to whole characters followed by the same held tail.
  const size_t keep = std::min(window_.size(), size_t(held_tokens_) + 1);
  std::vector<int32_t> kept(window_.end() - keep, window_.end());
  std::swap(window_, kept);
  const std::string restarted = DecodeWindow();
  const absl::string_view held = text.substr(text.size() - tail);
  const size_t done = restarted.size() >= tail ? restarted.size() - tail : 0;
  const absl::string_view before = absl::string_view(restarted).substr(0, done);
  if (restarted.size() >= tail && done > 0 &&
      absl::string_view(restarted).substr(done) == held &&
      IncompleteTailLength(before) == 0 && SanitizeUtf8(before) == before) {
    emitted_ = done;
  } else {
    std::swap(window_, kept);  // Not now: keep the whole window.
  }
}

std::string IncrementalDetokenizer::Flush() {
  const std::string text = DecodeWindow();
  const std::string out = SanitizeUtf8(
      absl::string_view(text).substr(std::min(emitted_, text.size())));
  window_.clear();
  emitted_ = 0;
  held_tokens_ = 0;
  return out;
}

absl::StatusOr<std::unique_ptr<ByteTokenizer>> ByteTokenizer::Create(
    const ModelConfig& config) {
  if (config.vocab_size < 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "byte tokenizer: vocab_size ", config.vocab_size, " is below 256"));
  }
  std::unique_ptr<ByteTokenizer> tokenizer(new ByteTokenizer());
  tokenizer->vocab_size_ = config.vocab_size;
  if (config.bos_token_id.has_value()) {
    tokenizer->bos_id_ = *config.bos_token_id;
  }
  tokenizer->eos_ids_.assign(config.eos_token_ids.begin(),
                             config.eos_token_ids.end());
  std::vector<int32_t> specials = tokenizer->eos_ids_;
  if (tokenizer->bos_id_.has_value()) specials.push_back(*tokenizer->bos_id_);
  for (int32_t id : specials) {
    if (id < 256 || id >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "byte tokenizer: special token id ", id, " must be in [256, ",
          config.vocab_size, ") (ids 0..255 are bytes)"));
    }
  }
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(
    absl::string_view text) const {
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    ids[i] = static_cast<unsigned char>(text[i]);
  }
  return ids;
}

std::string ByteTokenizer::DecodeRaw(absl::Span<const int32_t> ids) const {
  std::string text;
  text.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= 0 && id < 256) text.push_back(static_cast<char>(id));
  }
  return text;
}

std::string ByteTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return absl::StrCat("<invalid:", id, ">");
  if (id < 0x80) return std::string(1, static_cast<char>(id));
  if (id < 256) return absl::StrFormat("<0x%02X>", id);
  if (bos_id_.has_value() && id == *bos_id_) return "<s>";
  if (std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) {
    return "</s>";
  }
  return absl::StrCat("<unused:", id, ">");
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::Load(const std::string& path,
                             const ModelConfig& config) {
  if (!PathExists(path)) return absl::NotFoundError(path + ": not found");
  std::string error;
  std::unique_ptr<SentencePieceModel> model =
      SentencePieceModel::Load(path, &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a SentencePiece model: ", error));
  }
  if (model->piece_size() > config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", model->piece_size(),
        " pieces, more than the model's vocab_size ", config.vocab_size));
  }
  std::unique_ptr<SentencePieceTokenizer> tokenizer(
      new SentencePieceTokenizer());
  tokenizer->path_ = path;
  tokenizer->vocab_size_ = config.vocab_size;
  if (config.bos_token_id.has_value()) {
    tokenizer->bos_id_ = *config.bos_token_id;
  } else if (model->bos_id() >= 0) {
    tokenizer->bos_id_ = model->bos_id();
  }
  if (!config.eos_token_ids.empty()) {
    tokenizer->eos_ids_.assign(config.eos_token_ids.begin(),
                               config.eos_token_ids.end());
  } else if (model->eos_id() >= 0) {
    tokenizer->eos_ids_ = {model->eos_id()};
  }
  tokenizer->model_ = std::move(model);
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text) const {
  std::vector<int> ids;
  std::string error;
  if (!model_->Encode(std::string_view(text.data(), text.size()), &ids,
                      &error)) {
    return absl::InternalError(
        absl::StrCat(path_, ": SentencePiece failed to encode: ", error));
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::DecodeRaw(
    absl::Span<const int32_t> ids) const {
  std::vector<int> pieces;
  pieces.reserve(ids.size());
  for (int32_t id : ids) {
    // Ids past the pieces (padded embeddings) and the config's specials
    // render as nothing.
    if (id >= model_->piece_size()) continue;
    if (bos_id_.has_value() && id == *bos_id_) continue;
    if (std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end()) {
      continue;
    }
    pieces.push_back(id);
  }
  std::string text, error;
  // Decoding valid ids does not fail; if the library still does, the text
  // is marked rather than dropped silently.
  if (!model_->Decode(pieces, &text, &error)) return std::string(kReplacement);
  return text;
}

std::string SentencePieceTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return absl::StrCat("<invalid:", id, ">");
  if (id >= model_->piece_size()) return absl::StrCat("<unused:", id, ">");
  // Pieces are UTF-8; "▁" (U+2581) is SentencePiece's space.
  std::string piece = model_->IdToPiece(id);
  constexpr absl::string_view kSpace = "\xE2\x96\x81";
  std::string out;
  for (size_t i = 0; i < piece.size();) {
    if (absl::string_view(piece).substr(i, kSpace.size()) == kSpace) {
      out.push_back(' ');
      i += kSpace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return SanitizeUtf8(out);
}

JsonTokenizer::~JsonTokenizer() = default;

std::optional<std::string> TokenizerConfigSpecialToken(
    const nlohmann::json& config, const char* key) {
  if (!config.is_object()) return std::nullopt;
  const auto it = config.find(key);
  if (it == config.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto content = it->find("content");
    if (content != it->end() && content->is_string()) {
      return content->get<std::string>();
    }
  }
  return std::nullopt;
}

absl::StatusOr<std::unique_ptr<JsonTokenizer>> JsonTokenizer::Load(
    const std::string& path, const ModelConfig& config) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<nlohmann::json> json = ParseJson(*text, path);
  if (!json.ok()) return json.status();
  absl::StatusOr<std::unique_ptr<HfTokenizer>> hf =
      HfTokenizer::FromJson(*json);
  if (!hf.ok()) {
    return absl::Status(hf.status().code(),
                        absl::StrCat(path, ": ", hf.status().message()));
  }
  if ((*hf)->id_limit() > config.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ids up to ", (*hf)->id_limit() - 1,
                     ", beyond the model's vocab_size ", config.vocab_size));
  }
  // tokenizer_config.json names the special tokens when config.json does not.
  nlohmann::json tokenizer_config;
  const size_t slash = path.rfind('/');
  const std::string config_path =
      JoinPath(slash == std::string::npos ? "." : path.substr(0, slash),
               "tokenizer_config.json");
  if (PathExists(config_path)) {
    absl::StatusOr<std::string> config_text = ReadFile(config_path);
    if (!config_text.ok()) return config_text.status();
    absl::StatusOr<nlohmann::json> parsed =
        ParseJson(*config_text, config_path);
    if (!parsed.ok()) return parsed.status();
    tokenizer_config = *std::move(parsed);
  }
  std::unique_ptr<JsonTokenizer> tokenizer(new JsonTokenizer());
  tokenizer->path_ = path;
  tokenizer->vocab_size_ = config.vocab_size;
  if (config.bos_token_id.has_value()) {
    tokenizer->bos_id_ = *config.bos_token_id;
  } else if (std::optional<std::string> bos =
                 TokenizerConfigSpecialToken(tokenizer_config, "bos_token")) {
    tokenizer->bos_id_ = (*hf)->TokenToId(*bos);
  }
  if (!config.eos_token_ids.empty()) {
    tokenizer->eos_ids_.assign(config.eos_token_ids.begin(),
                               config.eos_token_ids.end());
  } else if (std::optional<std::string> eos =
                 TokenizerConfigSpecialToken(tokenizer_config, "eos_token")) {
    if (std::optional<int32_t> id = (*hf)->TokenToId(*eos)) {
      tokenizer->eos_ids_ = {*id};
    }
  }
  tokenizer->tokenizer_ = *std::move(hf);
  return tokenizer;
}

absl::StatusOr<std::vector<int32_t>> JsonTokenizer::Encode(
    absl::string_view text) const {
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer_->Encode(text, /*add_special_tokens=*/false);
  if (!ids.ok()) {
    return absl::Status(ids.status().code(),
                        absl::StrCat(path_, ": ", ids.status().message()));
  }
  return ids;
}

std::optional<std::string> JsonTokenizer::FindSpecialToken(
    absl::string_view text) const {
  // Added tokens matched in raw text (normalized ones are rare and matched
  // after normalization; both count).
  std::optional<std::string> found;
  for (const bool normalized : {false, true}) {
    tokenizer_->added_tokens().Split(
        text, normalized, [](absl::string_view) {},
        [&](int32_t id) {
          if (!found.has_value() && tokenizer_->IsSpecial(id)) {
            found = *tokenizer_->IdToToken(id);
          }
        });
    if (found.has_value()) break;
  }
  return found;
}

bool JsonTokenizer::IsControl(int32_t id) const {
  return tokenizer_->IsSpecial(id) || (bos_id_.has_value() && id == *bos_id_) ||
         std::find(eos_ids_.begin(), eos_ids_.end(), id) != eos_ids_.end();
}

std::string JsonTokenizer::DecodeRaw(absl::Span<const int32_t> ids) const {
  std::vector<int32_t> kept;
  kept.reserve(ids.size());
  for (int32_t id : ids) {
    if (!IsControl(id)) kept.push_back(id);
  }
  return tokenizer_->Decode(kept, /*skip_special_tokens=*/true);
}

std::string JsonTokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size_) return absl::StrCat("<invalid:", id, ">");
  const std::string* token = tokenizer_->IdToToken(id);
  if (token == nullptr) return absl::StrCat("<unused:", id, ">");
  // Special tokens and byte tokens read as written ("<|eot_id|>", "<0xE2>").
  if (IsControl(id) ||
      (tokenizer_->model().byte_fallback() && token->size() == 6 &&
       absl::StartsWith(*token, "<0x"))) {
    return *token;
  }
  // Decoded after a plain token, so that decoders which strip the text's
  // first space (Metaspace, Strip) leave this token's.
  std::string text = tokenizer_->Decode({id}, false);
  if (std::optional<int32_t> anchor = tokenizer_->TokenToId("a")) {
    const std::string alone = tokenizer_->Decode({*anchor}, false);
    const std::string both = tokenizer_->Decode({*anchor, id}, false);
    if (!alone.empty() && absl::StartsWith(both, alone)) {
      text = both.substr(alone.size());
    }
  }
  if (IsValidUtf8(text)) return text;
  // Part of a character: its bytes.
  std::string out;
  for (size_t i = 0; i < text.size();) {
    bool complete = false;
    const size_t n =
        ValidUtf8PrefixLength(absl::string_view(text).substr(i), &complete);
    if (n > 0 && complete) {
      out.append(text, i, n);
      i += n;
    } else {
      out += absl::StrFormat("<0x%02X>", static_cast<unsigned char>(text[i]));
      ++i;
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& model_dir, const ModelConfig& config) {
  const std::string json_path = JoinPath(model_dir, "tokenizer.json");
  if (PathExists(json_path)) {
    absl::StatusOr<std::unique_ptr<JsonTokenizer>> tokenizer =
        JsonTokenizer::Load(json_path, config);
    if (!tokenizer.ok()) return tokenizer.status();
    return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
  }
  const std::string sentencepiece_path = JoinPath(model_dir, "tokenizer.model");
  if (PathExists(sentencepiece_path)) {
    absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> tokenizer =
        SentencePieceTokenizer::Load(sentencepiece_path, config);
    if (!tokenizer.ok()) return tokenizer.status();
    return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
  }
  const std::string config_path = JoinPath(model_dir, "tokenizer_config.json");
  if (PathExists(config_path)) {
    absl::StatusOr<std::string> text = ReadFile(config_path);
    if (!text.ok()) return text.status();
    absl::StatusOr<nlohmann::json> json = ParseJson(*text, config_path);
    if (!json.ok()) return json.status();
    auto it = json->is_object() ? json->find("tokenizer_class") : json->end();
    if (it != json->end() && it->is_string() &&
        it->get<std::string>() == kByteTokenizerClass) {
      absl::StatusOr<std::unique_ptr<ByteTokenizer>> tokenizer =
          ByteTokenizer::Create(config);
      if (!tokenizer.ok()) return tokenizer.status();
      return std::unique_ptr<Tokenizer>(*std::move(tokenizer));
    }
  }
  return absl::NotFoundError(absl::StrCat(
      model_dir,
      ": no tokenizer longctx can read: no tokenizer.json (Hugging Face), "
      "no tokenizer.model (SentencePiece), no tokenizer_config.json with "
      "\"tokenizer_class\": \"",
      kByteTokenizerClass, "\"; send token ids instead of text"));
}

}  // namespace longctx
