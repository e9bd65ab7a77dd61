#include "model/hf_tokenizer/tokenizer_families.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/hf_tokenizer/hf_tokenizer.h"
#include "model/hf_tokenizer/training_text.h"
#include "model/hf_tokenizer/utf8.h"

namespace longctx {
namespace {

class FamilyTest : public ::testing::TestWithParam<const char*> {};

TEST_P(FamilyTest, LoadsCompressesAndRoundTrips) {
  absl::StatusOr<TokenizerFamily> family = ParseTokenizerFamily(GetParam());
  ASSERT_TRUE(family.ok());
  absl::StatusOr<FamilyTokenizer> made =
      MakeFamilyTokenizer(*family, 800, TokenizerTrainingText());
  ASSERT_TRUE(made.ok()) << made.status();
  absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
      HfTokenizer::FromJson(made->tokenizer);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->id_limit(), made->id_limit);
  EXPECT_EQ(made->tokenizer["model"]["merges"].size(), 800u);

  const absl::string_view text = TokenizerTrainingText();
  absl::StatusOr<std::vector<int32_t>> ids = (*tokenizer)->Encode(text, false);
  ASSERT_TRUE(ids.ok()) << ids.status();
  // The merges were learned on this text: well under one token per 2 bytes.
  EXPECT_LT(ids->size(), text.size() / 2);
  EXPECT_EQ(SanitizeUtf8((*tokenizer)->Decode(*ids, false)), text);

  // Unseen text, special tokens inside it, and bytes that are not UTF-8.
  const std::string eos = *(*tokenizer)->IdToToken(made->eos_ids.front());
  const std::string other = "Zebras \xF0\x9F\xA6\x93 qu\xC3\xA9" + eos +
                            "  tabs\t\tand\n\nnewlines 12345678";
  ids = (*tokenizer)->Encode(other, true);
  ASSERT_TRUE(ids.ok());
  EXPECT_NE(std::find(ids->begin(), ids->end(), made->eos_ids.front()),
            ids->end());
  if (made->bos_id >= 0 && *family != TokenizerFamily::kQwen2) {
    EXPECT_EQ(ids->front(), made->bos_id);
  }
  EXPECT_EQ(SanitizeUtf8((*tokenizer)->Decode(*ids, false)).find(eos) !=
                std::string::npos,
            true);
  ids = (*tokenizer)->Encode(other, false);
  ASSERT_TRUE(ids.ok());
  std::string expected = other;
  if (*family == TokenizerFamily::kLlama2) {
    // The older layout's Prepend normalizer runs on each piece between added
    // tokens, so a "▁" (a space) follows "</s>", as with the Hub's Llama 2
    // files ("legacy" behavior).
    expected.insert(expected.find(eos) + eos.size(), " ");
  }
  EXPECT_EQ(SanitizeUtf8((*tokenizer)->Decode(*ids, false)), expected);
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyTest,
                         ::testing::Values("llama3", "qwen2", "mistral",
                                           "llama2"));

TEST(FamilyTest, UnknownFamilyNamesTheChoices) {
  absl::StatusOr<TokenizerFamily> family = ParseTokenizerFamily("gpt5");
  ASSERT_FALSE(family.ok());
  EXPECT_THAT(family.status().message(), ::testing::HasSubstr("llama3, qwen2"));
}

}  // namespace
}  // namespace longctx
