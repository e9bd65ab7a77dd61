#include "model/hf_tokenizer/hf_tokenizer.h"

#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_tokenizer/byte_level.h"
#include "model/hf_tokenizer/pre_tokenizer.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using json = nlohmann::json;

// A byte-level vocab: ids 0..255 are the bytes, then `merges` in order, each
// adding the merged token with the next id.
json ByteLevelModel(
    const std::vector<std::pair<std::string, std::string>>& merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    vocab[std::string(ByteLevelChar(static_cast<unsigned char>(b)))] = b;
  }
  json merge_list = json::array();
  int next = 256;
  for (const auto& [a, b] : merges) {
    merge_list.push_back(a + " " + b);
    if (!vocab.contains(a + b)) vocab[a + b] = next++;
  }
  return {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}};
}

std::unique_ptr<HfTokenizer> Build(const json& spec) {
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(spec);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::vector<std::string> Tokens(const HfTokenizer& tokenizer,
                                const std::vector<int32_t>& ids) {
  std::vector<std::string> out;
  for (int32_t id : ids) {
    const std::string* token = tokenizer.IdToToken(id);
    out.push_back(token == nullptr ? "?" : *token);
  }
  return out;
}

json Gpt2Style(const json& model) {
  return {{"model", model},
          {"pre_tokenizer",
           {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"use_regex", true}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"added_tokens", json::array({{{"id", 1000},
                                         {"content", "<|end|>"},
                                         {"special", true},
                                         {"normalized", false}}})}};
}

TEST(HfTokenizerTest, ByteLevelMergesLowestRankFirstAndRoundTrips) {
  // "Ġ" is the space's character.
  auto tokenizer = Build(Gpt2Style(ByteLevelModel({{"l", "l"},
                                                   {"h", "e"},
                                                   {"he", "ll"},
                                                   {"hell", "o"},
                                                   {"Ġ", "w"},
                                                   {"o", "r"},
                                                   {"Ġw", "or"}})));
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer->Encode("hello world<|end|>!", false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(Tokens(*tokenizer, *ids),
              ElementsAre("hello", "Ġwor", "l", "d", "<|end|>", "!"));
  EXPECT_EQ(SanitizeUtf8(tokenizer->Decode(*ids, false)),
            "hello world<|end|>!");
  EXPECT_EQ(SanitizeUtf8(tokenizer->Decode(*ids, true)), "hello world!");
}

TEST(HfTokenizerTest, EqualRanksMergeLeftmostFirst) {
  auto tokenizer = Build(Gpt2Style(ByteLevelModel({{"a", "a"}})));
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode("aaaaa", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(Tokens(*tokenizer, *ids), ElementsAre("aa", "aa", "a"));
}

TEST(HfTokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocab) {
  // "abc" is in the vocab, but no merge makes it from "ab" + "c".
  json model = ByteLevelModel({{"a", "b"}});
  model["vocab"]["abc"] = 900;
  auto merged = Build(Gpt2Style(model));
  model["ignore_merges"] = true;
  auto whole = Build(Gpt2Style(model));
  ASSERT_NE(merged, nullptr);
  ASSERT_NE(whole, nullptr);
  EXPECT_THAT(Tokens(*merged, *merged->Encode("abc", false)),
              ElementsAre("ab", "c"));
  EXPECT_THAT(Tokens(*whole, *whole->Encode("abc", false)), ElementsAre("abc"));
}

TEST(HfTokenizerTest, InvalidUtf8IsEncodedAsReplacementCharacters) {
  auto tokenizer = Build(Gpt2Style(ByteLevelModel({})));
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> raw = tokenizer->Encode(
      "a\xFF"
      "b",
      false);
  absl::StatusOr<std::vector<int32_t>> replaced = tokenizer->Encode(
      "a\xEF\xBF\xBD"
      "b",
      false);
  ASSERT_TRUE(raw.ok() && replaced.ok());
  EXPECT_EQ(*raw, *replaced);
}

TEST(HfTokenizerTest, LongWordsMergeInLinearithmicTime) {
  // A 200,000-character word (no spaces): the heap keeps this fast, and the
  // merges apply all the way up.
  auto tokenizer = Build(
      Gpt2Style(ByteLevelModel({{"a", "a"}, {"aa", "aa"}, {"aaaa", "aaaa"}})));
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer->Encode(std::string(200000, 'a'), false);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 25000u);
}

TEST(HfTokenizerTest, SentencePieceStyleByteFallbackAndMetaspace) {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int next = 259;
  for (const char* piece :
       {"\xE2\x96\x81", "h", "i", "\xE2\x96\x81h", "\xE2\x96\x81hi"}) {
    vocab[piece] = next++;
  }
  json spec = {
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", json::array({"\xE2\x96\x81 h", "\xE2\x96\x81h i"})},
        {"unk_token", "<unk>"},
        {"byte_fallback", true},
        {"fuse_unk", true}}},
      {"pre_tokenizer",
       {{"type", "Metaspace"},
        {"replacement", "\xE2\x96\x81"},
        {"prepend_scheme", "first"},
        {"split", false}}},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "Replace"},
                                   {"pattern", {{"String", "\xE2\x96\x81"}}},
                                   {"content", " "}},
                                  {{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}},
                                  {{"type", "Strip"},
                                   {"content", " "},
                                   {"start", 1},
                                   {"stop", 0}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single",
         json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"added_tokens",
       json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                    {{"id", 1}, {"content", "<s>"}, {"special", true}},
                    {{"id", 2}, {"content", "</s>"}, {"special", true}}})}};
  auto tokenizer = Build(spec);
  ASSERT_NE(tokenizer, nullptr);
  // "你" (E4 BD A0) is not in the vocab: its bytes.
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer->Encode("hi \xE4\xBD\xA0", true);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_THAT(*ids, ElementsAre(1, 263, 259, 3 + 0xE4, 3 + 0xBD, 3 + 0xA0));
  EXPECT_EQ(tokenizer->Decode(*ids, true), "hi \xE4\xBD\xA0");
  // After an added token the "first" scheme prepends nothing.
  ids = tokenizer->Encode("</s>hi", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(2, 260, 261));
  // A lone byte that is not a character stays a byte, for the caller to
  // replace or to complete with the next tokens.
  EXPECT_EQ(tokenizer->Decode({3 + 0xE4}, true), "\xE4");
}

TEST(BpeModelTest, CutsBeforeSpacesOnlyWhenNoEntryCrossesThem) {
  const std::string space = "\xE2\x96\x81";
  json vocab = {{"a", 0}, {space, 1}, {space + "a", 2}, {space + space, 3}};
  json spec = {{"type", "BPE"},
               {"vocab", vocab},
               {"merges", json::array({space + " a", space + " " + space})}};
  absl::StatusOr<std::unique_ptr<BpeModel>> model =
      BpeModel::Create(spec, "model");
  ASSERT_TRUE(model.ok()) << model.status();
  const std::string word = "a" + space + "a" + space + space + "a";
  std::vector<absl::string_view> parts;
  (*model)->SplitIndependent(word, &parts);
  EXPECT_THAT(parts, ElementsAre("a", space + "a", space + space + "a"));
  // With an entry "a▁", a merge could cross the cut: no cuts.
  spec["vocab"]["a" + space] = 4;
  spec["merges"].push_back("a " + space);
  model = BpeModel::Create(spec, "model");
  ASSERT_TRUE(model.ok()) << model.status();
  parts.clear();
  (*model)->SplitIndependent(word, &parts);
  EXPECT_THAT(parts, ElementsAre(word));
}

TEST(HfTokenizerTest, AddedTokensStripAndMatchLongestFirst) {
  json spec = Gpt2Style(ByteLevelModel({}));
  spec["added_tokens"] = json::array(
      {{{"id", 1000}, {"content", "<a>"}, {"special", true}, {"lstrip", true}},
       {{"id", 1001}, {"content", "<a><b>"}, {"special", true}},
       {{"id", 1002},
        {"content", "[x]"},
        {"special", false},
        {"rstrip", true},
        {"normalized", false}}});
  auto tokenizer = Build(spec);
  ASSERT_NE(tokenizer, nullptr);
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer->Encode("q  <a>r<a><b>[x]  s", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(Tokens(*tokenizer, *ids),
              ElementsAre("q", "<a>", "r", "<a><b>", "[x]", "s"));
}

TEST(HfTokenizerTest, NormalizersRunBeforeTheModel) {
  json spec = Gpt2Style(ByteLevelModel({}));
  spec["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers", json::array({{{"type", "NFC"}},
                                   {{"type", "Replace"},
                                    {"pattern", {{"Regex", "\\s+"}}},
                                    {"content", " "}},
                                   {{"type", "Strip"},
                                    {"strip_left", true},
                                    {"strip_right", true}}})}};
  auto tokenizer = Build(spec);
  ASSERT_NE(tokenizer, nullptr);
  // "e" + combining acute composes to "é" (C3 A9: two byte-level tokens).
  absl::StatusOr<std::vector<int32_t>> ids =
      tokenizer->Encode("  e\xCC\x81 \t\n x ", false);
  ASSERT_TRUE(ids.ok());
  EXPECT_THAT(*ids, ElementsAre(0xC3, 0xA9, ' ', 'x'));
}

TEST(HfTokenizerTest, UnsupportedComponentsAreNamed) {
  json spec = Gpt2Style(ByteLevelModel({}));
  spec["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "BertPreTokenizer"}}})}};
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(spec);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("pre_tokenizer.pretokenizers[0]: pre-tokenizer "
                        "\"BertPreTokenizer\" is not supported"));
  spec = Gpt2Style(ByteLevelModel({}));
  spec["model"]["type"] = "Unigram";
  tokenizer = HfTokenizer::FromJson(spec);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("model \"Unigram\" is not supported"));
  spec = Gpt2Style(ByteLevelModel({}));
  spec["normalizer"] = {{"type", "Precompiled"}};
  tokenizer = HfTokenizer::FromJson(spec);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(), HasSubstr("\"Precompiled\""));
  spec = Gpt2Style(ByteLevelModel({}));
  spec["model"]["merges"] = json::array({"x yz"});
  tokenizer = HfTokenizer::FromJson(spec);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("merges[0]: \"yz\" is not in the vocab"));
  spec = Gpt2Style(ByteLevelModel({}));
  spec["pre_tokenizer"] = {{"type", "Split"},
                           {"pattern", {{"Regex", "(unclosed"}}},
                           {"behavior", "Isolated"}};
  tokenizer = HfTokenizer::FromJson(spec);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("pre_tokenizer.pattern: regular expression"));
}

// The delimiter behaviors on the Rust library's own example.
TEST(SplitRangesTest, EveryBehavior) {
  const std::string text = "the-final--countdown";
  std::vector<std::pair<size_t, size_t>> dashes;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '-') dashes.emplace_back(i, i + 1);
  }
  const auto split = [&](SplitBehavior behavior, bool invert) {
    std::vector<std::string> words;
    for (const auto& [start, end] :
         SplitRanges(text.size(), dashes, behavior, invert)) {
      words.push_back(text.substr(start, end - start));
    }
    return words;
  };
  EXPECT_THAT(split(SplitBehavior::kRemoved, false),
              ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(split(SplitBehavior::kIsolated, false),
              ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(split(SplitBehavior::kMergedWithPrevious, false),
              ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(split(SplitBehavior::kMergedWithNext, false),
              ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(split(SplitBehavior::kContiguous, false),
              ElementsAre("the", "-", "final", "--", "countdown"));
  EXPECT_THAT(split(SplitBehavior::kRemoved, true), ElementsAre("-", "-", "-"));
}

}  // namespace
}  // namespace longctx
