#include "model/hf_tokenizer/tokenizer_families.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/hf_tokenizer/byte_level.h"
#include "model/hf_tokenizer/normalizer.h"
#include "model/hf_tokenizer/pre_tokenizer.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

using json = nlohmann::json;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kSpace[] = "\xE2\x96\x81";  // "▁"

// Chat templates in each family's format (written for longctx; the Hub's
// own are longer but use the same constructs).
constexpr char kLlama3Template[] = R"jinja({{- bos_token }}
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{%- if system_message %}
    {{- '<|start_header_id|>system<|end_header_id|>\n\n' + system_message + '<|eot_id|>' }}
{%- endif %}
{%- for message in messages %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
)jinja";

constexpr char kQwen2Template[] = R"jinja({%- for message in messages %}
    {%- if loop.first and message.role != 'system' %}
        {{- '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
    {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
)jinja";

constexpr char kMistralTemplate[] =
    R"jinja({%- if messages and messages[0].role == 'system' %}
    {%- set system = messages[0].content %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = '' %}
    {%- set turns = messages %}
{%- endif %}
{{- bos_token }}
{%- for message in turns %}
    {%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('roles must alternate user, assistant, user, ... after an optional system message') }}
    {%- endif %}
    {%- if message.role == 'user' %}
        {%- if loop.last and system %}
            {{- '[INST] ' + system + '\n\n' + message.content + '[/INST]' }}
        {%- else %}
            {{- '[INST] ' + message.content + '[/INST]' }}
        {%- endif %}
    {%- else %}
        {{- ' ' + message.content + eos_token }}
    {%- endif %}
{%- endfor %}
)jinja";

constexpr char kLlama2Template[] =
    R"jinja({%- if messages and messages[0].role == 'system' %}
    {%- set system = '<<SYS>>\n' + messages[0].content + '\n<</SYS>>\n\n' %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system = '' %}
    {%- set turns = messages %}
{%- endif %}
{%- for message in turns %}
    {%- if (message.role == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('roles must alternate user, assistant, user, ... after an optional system message') }}
    {%- endif %}
    {%- if message.role == 'user' %}
        {{- bos_token + '[INST] ' + (system if loop.first else '') + message.content | trim + ' [/INST]' }}
    {%- else %}
        {{- ' ' + message.content | trim + ' ' + eos_token }}
    {%- endif %}
{%- endfor %}
)jinja";

bool ByteLevelFamily(TokenizerFamily family) {
  return family == TokenizerFamily::kLlama3 ||
         family == TokenizerFamily::kQwen2;
}

json ByteLevelPreTokenizerSpec(const char* pattern) {
  return {{"type", "Sequence"},
          {"pretokenizers", json::array({{{"type", "Split"},
                                          {"pattern", {{"Regex", pattern}}},
                                          {"behavior", "Isolated"},
                                          {"invert", false}},
                                         {{"type", "ByteLevel"},
                                          {"add_prefix_space", false},
                                          {"trim_offsets", true},
                                          {"use_regex", false}}})}};
}

json MetaspaceSpec(bool split) {
  return {{"type", "Metaspace"},
          {"replacement", kSpace},
          {"prepend_scheme", "first"},
          {"split", split}};
}

json AddedTokenSpec(int id, const std::string& content, bool special) {
  return {{"id", id},          {"content", content}, {"single_word", false},
          {"lstrip", false},   {"rstrip", false},    {"normalized", false},
          {"special", special}};
}

json TemplateSpec(const std::string& bos, int bos_id) {
  return {
      {"type", "TemplateProcessing"},
      {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                            {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                            {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                            {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
      {"special_tokens",
       {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}}};
}

// The words of `text` for learning merges, with their counts, pre-tokenized
// as the family encodes (SentencePiece-style families: split before each
// "▁", as SentencePiece trains).
absl::StatusOr<std::map<std::string, int64_t>> TrainingWords(
    TokenizerFamily family, absl::string_view text) {
  json normalizer_spec, pre_tokenizer_spec;
  switch (family) {
    case TokenizerFamily::kLlama3:
      pre_tokenizer_spec = ByteLevelPreTokenizerSpec(kLlama3Pattern);
      break;
    case TokenizerFamily::kQwen2:
      normalizer_spec = {{"type", "NFC"}};
      pre_tokenizer_spec = ByteLevelPreTokenizerSpec(kQwen2Pattern);
      break;
    case TokenizerFamily::kMistral:
    case TokenizerFamily::kLlama2:
      pre_tokenizer_spec = MetaspaceSpec(/*split=*/true);
      break;
  }
  absl::StatusOr<std::unique_ptr<Normalizer>> normalizer =
      MakeNormalizer(normalizer_spec, "normalizer");
  if (!normalizer.ok()) return normalizer.status();
  absl::StatusOr<std::unique_ptr<PreTokenizer>> pre_tokenizer =
      MakePreTokenizer(pre_tokenizer_spec, "pre_tokenizer");
  if (!pre_tokenizer.ok()) return pre_tokenizer.status();
  std::string normalized = SanitizeUtf8(text);
  if (*normalizer != nullptr) {
    absl::Status status = (*normalizer)->Normalize(&normalized);
    if (!status.ok()) return status;
  }
  std::vector<PreToken> words = {PreToken{normalized, true}};
  absl::Status status = (*pre_tokenizer)->PreTokenize(&words);
  if (!status.ok()) return status;
  std::map<std::string, int64_t> counts;
  for (const PreToken& word : words) ++counts[word.text];
  return counts;
}

// LearnMerges: the greedy BPE training loop. `symbols` holds each word as ids
// into `tokens` (-1 separates characters that never merge); each round merges
// the most frequent adjacent pair (ties: the pair of smaller token strings)
// everywhere, adding the merged token.
std::vector<std::pair<int, int>> LearnMerges(
    int merges, const std::vector<int64_t>& counts,
    std::vector<std::vector<int>>* symbols, std::vector<std::string>* tokens,
    absl::flat_hash_map<std::string, int>* ids) {
  std::vector<std::pair<int, int>> learned;
  const auto key = [](int a, int b) {
    return (static_cast<uint64_t>(a) << 32) | static_cast<uint32_t>(b);
  };
  for (int round = 0; round < merges; ++round) {
    absl::flat_hash_map<uint64_t, int64_t> pairs;
    for (size_t w = 0; w < symbols->size(); ++w) {
      const std::vector<int>& word = (*symbols)[w];
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        if (word[i] >= 0 && word[i + 1] >= 0) {
          pairs[key(word[i], word[i + 1])] += counts[w];
        }
      }
    }
    int64_t best_count = 1;
    int best_a = -1, best_b = -1;
    for (const auto& [pair, count] : pairs) {
      const int a = static_cast<int>(pair >> 32);
      const int b = static_cast<int>(pair & 0xFFFFFFFF);
      if (count > best_count ||
          (count == best_count && best_a >= 0 &&
           std::make_pair((*tokens)[a], (*tokens)[b]) <
               std::make_pair((*tokens)[best_a], (*tokens)[best_b]))) {
        best_count = count;
        best_a = a;
        best_b = b;
      }
    }
    if (best_a < 0) break;  // No pair occurs twice.
    const std::string merged = (*tokens)[best_a] + (*tokens)[best_b];
    auto [it, added] = ids->emplace(merged, static_cast<int>(tokens->size()));
    if (added) tokens->push_back(merged);
    const int result = it->second;
    learned.emplace_back(best_a, best_b);
    for (std::vector<int>& word : *symbols) {
      size_t out = 0;
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == best_a && word[i + 1] == best_b) {
          word[out++] = result;
          ++i;
        } else {
          word[out++] = word[i];
        }
      }
      word.resize(out);
    }
  }
  return learned;
}

}  // namespace

absl::StatusOr<TokenizerFamily> ParseTokenizerFamily(absl::string_view name) {
  if (name == "llama3") return TokenizerFamily::kLlama3;
  if (name == "qwen2") return TokenizerFamily::kQwen2;
  if (name == "mistral") return TokenizerFamily::kMistral;
  if (name == "llama2") return TokenizerFamily::kLlama2;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tokenizer family \"", name,
                   "\": choose llama3, qwen2, mistral or llama2"));
}

absl::StatusOr<FamilyTokenizer> MakeFamilyTokenizer(TokenizerFamily family,
                                                    int merges,
                                                    absl::string_view text) {
  if (merges < 0 || merges > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("merges ", merges, " is outside [0, 100000]"));
  }
  absl::StatusOr<std::map<std::string, int64_t>> words =
      TrainingWords(family, text);
  if (!words.ok()) return words.status();

  // The initial vocab.
  std::vector<std::string> tokens;
  absl::flat_hash_map<std::string, int> ids;
  const auto add = [&](const std::string& token) {
    auto [it, added] = ids.emplace(token, static_cast<int>(tokens.size()));
    if (added) tokens.push_back(token);
    return it->second;
  };
  const bool byte_level = ByteLevelFamily(family);
  if (byte_level) {
    for (int b = 0; b < 256; ++b) {
      add(std::string(ByteLevelChar(static_cast<unsigned char>(b))));
    }
  } else {
    add("<unk>");
    add("<s>");
    add("</s>");
    for (int b = 0; b < 256; ++b) add(absl::StrFormat("<0x%02X>", b));
    // Characters seen at least twice, most frequent first; rarer ones are
    // left to byte_fallback.
    std::map<std::string, int64_t> chars;
    for (const auto& [word, count] : *words) {
      for (size_t i = 0; i < word.size();) {
        char32_t cp;
        const size_t n = DecodeUtf8Char(absl::string_view(word).substr(i), &cp);
        chars[word.substr(i, n)] += count;
        i += n;
      }
    }
    std::vector<std::pair<int64_t, std::string>> ranked;
    for (const auto& [c, count] : chars) {
      if (count >= 2) ranked.emplace_back(-count, c);
    }
    std::sort(ranked.begin(), ranked.end());
    for (const auto& entry : ranked) add(entry.second);
  }
  std::vector<std::vector<int>> symbols;
  std::vector<int64_t> counts;
  for (const auto& [word, count] : *words) {
    std::vector<int> word_symbols;
    for (size_t i = 0; i < word.size();) {
      char32_t cp;
      const size_t n = DecodeUtf8Char(absl::string_view(word).substr(i), &cp);
      const auto it = ids.find(word.substr(i, n));
      word_symbols.push_back(it == ids.end() ? -1 : it->second);
      i += n;
    }
    symbols.push_back(std::move(word_symbols));
    counts.push_back(count);
  }
  const std::vector<std::pair<int, int>> learned =
      LearnMerges(merges, counts, &symbols, &tokens, &ids);

  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json merge_list = json::array();
  for (const auto& [a, b] : learned) {
    if (byte_level) {
      merge_list.push_back(tokens[a] + " " + tokens[b]);
    } else {
      merge_list.push_back(json::array({tokens[a], tokens[b]}));
    }
  }
  int next_id = static_cast<int>(tokens.size());

  FamilyTokenizer out;
  json& spec = out.tokenizer;
  spec["version"] = "1.0";
  spec["truncation"] = nullptr;
  spec["padding"] = nullptr;
  spec["model"] = {{"type", "BPE"},
                   {"dropout", nullptr},
                   {"unk_token", byte_level ? json(nullptr) : json("<unk>")},
                   {"continuing_subword_prefix", nullptr},
                   {"end_of_word_suffix", nullptr},
                   {"fuse_unk", !byte_level},
                   {"byte_fallback", !byte_level},
                   {"ignore_merges", family == TokenizerFamily::kLlama3},
                   {"vocab", vocab},
                   {"merges", merge_list}};
  json added = json::array();
  json& config = out.tokenizer_config;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  config["clean_up_tokenization_spaces"] = false;
  config["model_max_length"] = 131072;
  switch (family) {
    case TokenizerFamily::kLlama3: {
      const char* names[] = {"<|begin_of_text|>",
                             "<|end_of_text|>",
                             "<|reserved_special_token_0|>",
                             "<|reserved_special_token_1|>",
                             "<|finetune_right_pad_id|>",
                             "<|reserved_special_token_2|>",
                             "<|start_header_id|>",
                             "<|end_header_id|>",
                             "<|eom_id|>",
                             "<|eot_id|>",
                             "<|python_tag|>"};
      const int first = next_id;
      for (const char* name : names)
        added.push_back(AddedTokenSpec(next_id++, name, true));
      out.bos_id = first;
      out.eos_ids = {first + 1, first + 8, first + 9};
      spec["normalizer"] = nullptr;
      spec["pre_tokenizer"] = ByteLevelPreTokenizerSpec(kLlama3Pattern);
      spec["post_processor"] = {
          {"type", "Sequence"},
          {"processors",
           json::array({{{"type", "ByteLevel"},
                         {"add_prefix_space", true},
                         {"trim_offsets", false},
                         {"use_regex", true}},
                        TemplateSpec("<|begin_of_text|>", first)})}};
      spec["decoder"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", true},
                         {"trim_offsets", true},
                         {"use_regex", true}};
      config["bos_token"] = "<|begin_of_text|>";
      config["eos_token"] = "<|eot_id|>";
      config["chat_template"] = kLlama3Template;
      break;
    }
    case TokenizerFamily::kQwen2: {
      const int first = next_id;
      added.push_back(AddedTokenSpec(next_id++, "<|endoftext|>", true));
      added.push_back(AddedTokenSpec(next_id++, "<|im_start|>", true));
      added.push_back(AddedTokenSpec(next_id++, "<|im_end|>", true));
      added.push_back(AddedTokenSpec(next_id++, "<think>", false));
      added.push_back(AddedTokenSpec(next_id++, "</think>", false));
      out.eos_ids = {first + 2, first};
      spec["normalizer"] = {{"type", "NFC"}};
      spec["pre_tokenizer"] = ByteLevelPreTokenizerSpec(kQwen2Pattern);
      spec["post_processor"] = {{"type", "ByteLevel"},
                                {"add_prefix_space", false},
                                {"trim_offsets", false},
                                {"use_regex", false}};
      spec["decoder"] = {{"type", "ByteLevel"},
                         {"add_prefix_space", false},
                         {"trim_offsets", false},
                         {"use_regex", false}};
      config["bos_token"] = nullptr;
      config["eos_token"] = "<|im_end|>";
      config["pad_token"] = "<|endoftext|>";
      config["chat_template"] = kQwen2Template;
      break;
    }
    case TokenizerFamily::kMistral:
    case TokenizerFamily::kLlama2: {
      added.push_back(AddedTokenSpec(0, "<unk>", true));
      added.push_back(AddedTokenSpec(1, "<s>", true));
      added.push_back(AddedTokenSpec(2, "</s>", true));
      if (family == TokenizerFamily::kMistral) {
        added.push_back(AddedTokenSpec(next_id++, "[INST]", true));
        added.push_back(AddedTokenSpec(next_id++, "[/INST]", true));
        spec["normalizer"] = nullptr;
        spec["pre_tokenizer"] = MetaspaceSpec(/*split=*/false);
      } else {
        spec["normalizer"] = {
            {"type", "Sequence"},
            {"normalizers",
             json::array({{{"type", "Prepend"}, {"prepend", kSpace}},
                          {{"type", "Replace"},
                           {"pattern", {{"String", " "}}},
                           {"content", kSpace}}})}};
        spec["pre_tokenizer"] = nullptr;
      }
      out.bos_id = 1;
      out.eos_ids = {2};
      spec["post_processor"] = TemplateSpec("<s>", 1);
      spec["decoder"] = {
          {"type", "Sequence"},
          {"decoders", json::array({{{"type", "Replace"},
                                     {"pattern", {{"String", kSpace}}},
                                     {"content", " "}},
                                    {{"type", "ByteFallback"}},
                                    {{"type", "Fuse"}},
                                    {{"type", "Strip"},
                                     {"content", " "},
                                     {"start", 1},
                                     {"stop", 0}}})}};
      config["bos_token"] = "<s>";
      config["eos_token"] = "</s>";
      config["unk_token"] = "<unk>";
      config["chat_template"] = family == TokenizerFamily::kMistral
                                    ? kMistralTemplate
                                    : kLlama2Template;
      break;
    }
  }
  spec["added_tokens"] = added;
  out.id_limit = next_id;
  return out;
}

}  // namespace longctx
