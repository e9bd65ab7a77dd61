#include "model/folder/tokenizer.h"

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/folder/io_util.h"
#include "model/folder/sentencepiece_training.h"
#include "model/hf_tokenizer/utf8.h"
#include "services/common/testing/temp_dir.h"
#include "tools/make_tiny_model/tiny_model.h"

namespace longctx {
namespace {

using ::longctx::testing::NewTempDir;
using ::testing::HasSubstr;

constexpr char kReplacement[] = "\xEF\xBF\xBD";

ModelConfig ByteConfig(int vocab_size = 258) {
  ModelConfig config;
  config.vocab_size = vocab_size;
  config.bos_token_id = 256;
  config.eos_token_ids = {257};
  return config;
}

std::unique_ptr<ByteTokenizer> MakeByteTokenizer(int vocab_size = 258) {
  absl::StatusOr<std::unique_ptr<ByteTokenizer>> tokenizer =
      ByteTokenizer::Create(ByteConfig(vocab_size));
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

// RandomUtf8 draws characters of every encoded length: ASCII, Latin,
// CJK, emoji.
std::string RandomUtf8(int chars, std::mt19937& rng) {
  std::string out;
  for (int i = 0; i < chars; ++i) {
    uint32_t cp;
    switch (rng() % 4) {
      case 0:
        cp = 0x20 + rng() % 0x5F;
        break;
      case 1:
        cp = 0xA0 + rng() % 0x500;
        break;
      case 2:
        cp = 0x4E00 + rng() % 0x5000;
        break;
      default:
        cp = 0x1F300 + rng() % 0x300;
        break;
    }
    AppendUtf8(cp, &out);
  }
  return out;
}

// PushAll feeds `ids` in random chunks and checks that every piece of output
// is valid UTF-8; returns the whole text including Flush.
std::string PushAll(const Tokenizer& tokenizer, const std::vector<int32_t>& ids,
                    std::mt19937& rng) {
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer.NewDetokenizer();
  std::string text;
  size_t i = 0;
  while (i < ids.size()) {
    const size_t n = std::min<size_t>(1 + rng() % 3, ids.size() - i);
    const std::string piece =
        stream->Push(absl::MakeConstSpan(ids).subspan(i, n));
    EXPECT_EQ(piece.find(kReplacement), std::string::npos)
        << "partial character came out after id " << i;
    text += piece;
    i += n;
  }
  return text + stream->Flush();
}

TEST(ByteTokenizerTest, RoundTripsArbitraryUtf8) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::mt19937 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const std::string text = RandomUtf8(1 + rng() % 40, rng);
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok());
    EXPECT_EQ(ids->size(), text.size());
    absl::StatusOr<std::string> decoded = tokenizer->Decode(*ids);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text);
  }
}

TEST(ByteTokenizerTest, DecodeSkipsSpecialAndUnusedIds) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer(300);
  absl::StatusOr<std::string> text =
      tokenizer->Decode({256, 'h', 'i', 299, 257});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hi");
  EXPECT_EQ(tokenizer->bos_id(), 256);
  EXPECT_EQ(tokenizer->eos_ids(), std::vector<int32_t>{257});
  EXPECT_EQ(tokenizer->vocab_size(), 300);
}

TEST(ByteTokenizerTest, DecodeRejectsIdsOutsideTheVocabulary) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  for (int32_t bad : {258, -1, 100000}) {
    absl::StatusOr<std::string> text = tokenizer->Decode({'a', bad});
    ASSERT_FALSE(text.ok());
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(text.status().message(),
                HasSubstr("outside the vocabulary [0, 258)"));
  }
}

TEST(ByteTokenizerTest, InvalidUtf8DecodesToReplacementCharacters) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  // A lone continuation byte, a truncated 3-byte character, an overlong
  // encoding of '/', a surrogate.
  EXPECT_EQ(*tokenizer->Decode({'a', 0x80, 'b'}),
            std::string("a") + kReplacement + "b");
  EXPECT_EQ(*tokenizer->Decode({0xE2, 0x82, 'c'}),
            std::string(kReplacement) + "c");
  EXPECT_EQ(*tokenizer->Decode({0xC0, 0xAF}),
            std::string(kReplacement) + kReplacement);
  EXPECT_EQ(*tokenizer->Decode({0xED, 0xA0, 0x80}),
            std::string(kReplacement) + kReplacement + kReplacement);
}

TEST(ByteTokenizerTest, TokenTextIsReadable) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer(300);
  EXPECT_EQ(tokenizer->TokenText('x'), "x");
  EXPECT_EQ(tokenizer->TokenText(0xE2), "<0xE2>");
  EXPECT_EQ(tokenizer->TokenText(256), "<s>");
  EXPECT_EQ(tokenizer->TokenText(257), "</s>");
  EXPECT_EQ(tokenizer->TokenText(299), "<unused:299>");
  EXPECT_EQ(tokenizer->TokenText(300), "<invalid:300>");
}

TEST(ByteTokenizerTest, SpecialIdsMustNotBeBytes) {
  ModelConfig config = ByteConfig();
  config.eos_token_ids = {10};
  absl::StatusOr<std::unique_ptr<ByteTokenizer>> tokenizer =
      ByteTokenizer::Create(config);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("special token id 10 must be in [256, 258)"));
  config = ByteConfig(100);
  config.bos_token_id.reset();
  config.eos_token_ids.clear();
  EXPECT_EQ(ByteTokenizer::Create(config).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(IncrementalDetokenizerTest, HoldsACharacterUntilItsLastByte) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  // "a€b" where € is E2 82 AC.
  EXPECT_EQ(stream->Push({'a'}), "a");
  EXPECT_EQ(stream->Push({0xE2}), "");
  EXPECT_EQ(stream->Push({0x82}), "");
  EXPECT_EQ(stream->Push({0xAC}), "\xE2\x82\xAC");
  EXPECT_EQ(stream->Push({'b', 257}), "b");
  EXPECT_EQ(stream->Flush(), "");
}

TEST(IncrementalDetokenizerTest, CompleteTextBeforeAPartialCharacterComesOut) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  // A 4-byte emoji (F0 9F 98 80) split 1 + 3, after some ASCII.
  EXPECT_EQ(stream->Push({'h', 'i', 0xF0}), "hi");
  EXPECT_EQ(stream->Push({0x9F, 0x98, 0x80}), "\xF0\x9F\x98\x80");
}

TEST(IncrementalDetokenizerTest, BrokenSequencesBecomeReplacementCharacters) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  EXPECT_EQ(stream->Push({0xE2}), "");
  EXPECT_EQ(stream->Push({'A'}), std::string(kReplacement) + "A");
  EXPECT_EQ(stream->Push({0x80}), kReplacement);  // Lone continuation byte.
  EXPECT_EQ(stream->Push({0xE2, 0x82}), "");
  EXPECT_EQ(stream->Flush(), kReplacement);  // Never completed.
  EXPECT_EQ(stream->Push({'z'}), "z");       // Flush started over.
}

// A broken sequence right before a valid character: the character must not
// be taken for part of the broken one (found by //fuzz:tokenizer_fuzz).
TEST(IncrementalDetokenizerTest, ValidCharacterAfterABrokenOneComesOutWhole) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  // A 4-byte sequence cut after 3 bytes, then U+5800 (3 bytes).
  std::string out;
  for (int byte : {0xF0, 0x9F, 0x98, 0xE5, 0xA0}) out += stream->Push({byte});
  EXPECT_EQ(out, kReplacement);
  EXPECT_EQ(stream->Push({0x80}), "\xE5\xA0\x80");
  EXPECT_EQ(stream->Flush(), "");
}

// Broken sequences one after another stream as Decode has them, however long
// they go on.
TEST(IncrementalDetokenizerTest, EndlessBrokenSequencesMatchDecode) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::vector<int32_t> ids;
  for (int i = 0; i < 200; ++i) {
    ids.push_back(0xE2);
    ids.push_back(0x82);
  }
  ids.push_back(0xAC);  // The last one completes: U+20AC.
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  std::string text;
  for (int32_t id : ids) text += stream->Push({id});
  text += stream->Flush();
  EXPECT_EQ(text, *tokenizer->Decode(ids));
  EXPECT_EQ(text.size(), 199 * std::strlen(kReplacement) + 3);
}

TEST(IncrementalDetokenizerTest, IdsOutsideTheVocabularyBecomeReplacement) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::unique_ptr<IncrementalDetokenizer> stream = tokenizer->NewDetokenizer();
  std::string out = stream->Push({'a', 999, 'b'});
  out += stream->Flush();
  EXPECT_EQ(out, std::string("a") + kReplacement + "b");
}

TEST(IncrementalDetokenizerTest, StreamEqualsDecodeForAnyChunking) {
  std::unique_ptr<ByteTokenizer> tokenizer = MakeByteTokenizer();
  std::mt19937 rng(11);
  for (int trial = 0; trial < 100; ++trial) {
    // Long enough for the window to move many times.
    const std::string text = RandomUtf8(1 + rng() % 80, rng);
    const std::vector<int32_t> ids = *tokenizer->Encode(text);
    EXPECT_EQ(PushAll(*tokenizer, ids, rng), text);
  }
}

TEST(LoadTokenizerTest, TinyModelFolderGetsTheByteTokenizer) {
  const std::string dir = NewTempDir("tiny_tokenizer");
  ASSERT_TRUE(WriteTinyModel(TinyModelOptions(), dir).ok());
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, *config);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_NE(dynamic_cast<const ByteTokenizer*>(tokenizer->get()), nullptr);
  EXPECT_EQ((*tokenizer)->bos_id(), 256);
  EXPECT_EQ((*tokenizer)->eos_ids(), std::vector<int32_t>{257});
  EXPECT_EQ(*(*tokenizer)->Encode("AB"), (std::vector<int32_t>{65, 66}));
}

TEST(LoadTokenizerTest, FolderWithoutATokenizerIsNotFound) {
  const std::string dir = NewTempDir("no_tokenizer");
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "vocab.txt"), "a\n").ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, ByteConfig());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("no tokenizer longctx can read"));
}

TEST(LoadTokenizerTest, MalformedTokenizerJsonNamesTheProblem) {
  const std::string dir = NewTempDir("bad_tokenizer_json");
  ASSERT_TRUE(WriteFileAtomically(JoinPath(dir, "tokenizer.json"), "{}").ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, ByteConfig());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("tokenizer.json: tokenizer.json has no \"model\""));
}

// Folders made by make_tiny_model with a Hub family's tokenizer.json.
class JsonTokenizerTest : public ::testing::TestWithParam<const char*> {
 protected:
  std::unique_ptr<Tokenizer> Load() {
    const std::string dir = NewTempDir(std::string("json_") + GetParam());
    TinyModelOptions options;
    options.tokenizer = GetParam();
    options.tokenizer_merges = 400;
    EXPECT_TRUE(WriteTinyModel(options, dir).ok());
    absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
    EXPECT_TRUE(config.ok()) << config.status();
    if (!config.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        LoadTokenizer(dir, *config);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
  }
};

TEST_P(JsonTokenizerTest, LoadsWithTheFamilysSpecialIds) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_EQ(tokenizer->kind(), "tokenizer.json");
  ASSERT_FALSE(tokenizer->eos_ids().empty());
  // End-of-sequence tokens render as their names and decode to nothing.
  const int32_t eos = tokenizer->eos_ids().front();
  EXPECT_THAT(tokenizer->TokenText(eos), ::testing::StartsWith("<"));
  EXPECT_EQ(*tokenizer->Decode({eos}), "");
  const std::string named = tokenizer->TokenText(eos);
  // Written in the text, it is that one token.
  absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode("a" + named);
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->back(), eos);
  EXPECT_EQ(tokenizer->TokenText(tokenizer->vocab_size()),
            absl::StrCat("<invalid:", tokenizer->vocab_size(), ">"));
}

TEST_P(JsonTokenizerTest, StreamEqualsDecodeForAnyChunking) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 rng(29);
  for (int trial = 0; trial < 60; ++trial) {
    std::string text = trial % 2 ? "the model reads " : "";
    text += RandomUtf8(1 + rng() % 60, rng);
    text += " whole books and code bases";
    const std::vector<int32_t> ids = *tokenizer->Encode(text);
    EXPECT_EQ(PushAll(*tokenizer, ids, rng), *tokenizer->Decode(ids));
    // Metaspace families strip one leading space when decoding (the one they
    // prepend), as the Hub's files do: a text that starts with a space
    // comes back without it.
    // Qwen2's NFC normalizer composes characters, so only the stream is
    // compared there.
    if (text[0] != ' ' && GetParam() != std::string("qwen2")) {
      EXPECT_EQ(*tokenizer->Decode(ids), text);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Families, JsonTokenizerTest,
                         ::testing::Values("llama3", "qwen2", "mistral",
                                           "llama2"));

TEST(LoadTokenizerTest, CorruptTokenizerModelIsInvalid) {
  const std::string dir = NewTempDir("bad_sentencepiece");
  ASSERT_TRUE(
      WriteFileAtomically(JoinPath(dir, "tokenizer.model"), "not a model")
          .ok());
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(dir, ByteConfig());
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("tokenizer.model: not a SentencePiece model"));
}

// A SentencePiece model trained once for the tests below, on generated
// sentences in several scripts.
class SentencePieceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(NewTempDir("sentencepiece"));
    const std::string corpus = JoinPath(*dir_, "corpus.txt");
    std::ofstream out(corpus);
    const std::vector<std::string> words = {
        "the",   "long",     "context", "model", "reads", "whole",
        "books", "and",      "code",    "bases", "café",  "naïve",
        "über",  "straße",   "日本語",  "文章",  "模型",  "привет",
        "мир",   "ελληνικά", "42",      "2024",  "token", "stream"};
    std::mt19937 rng(3);
    for (int line = 0; line < 3000; ++line) {
      const int n = 3 + rng() % 10;
      for (int w = 0; w < n; ++w) {
        out << (w ? " " : "") << words[rng() % words.size()];
      }
      out << (rng() % 3 == 0 ? ".\n" : "\n");
    }
    out.close();
    std::string error;
    ASSERT_TRUE(TrainSentencePieceModel(corpus, JoinPath(*dir_, "tokenizer"),
                                        500, &error))
        << error;
  }
  static void TearDownTestSuite() { delete dir_; }

  static ModelConfig Config(int vocab_size) {
    ModelConfig config;
    config.vocab_size = vocab_size;
    return config;
  }

  static std::unique_ptr<Tokenizer> Load(int vocab_size = 512) {
    absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
        LoadTokenizer(*dir_, Config(vocab_size));
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
  }

  static std::string* dir_;
};

std::string* SentencePieceTest::dir_ = nullptr;

TEST_F(SentencePieceTest, LoadsWithTheModelsSpecialIds) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  EXPECT_NE(dynamic_cast<const SentencePieceTokenizer*>(tokenizer.get()),
            nullptr);
  EXPECT_EQ(tokenizer->vocab_size(), 512);
  EXPECT_EQ(tokenizer->bos_id(), 1);
  EXPECT_EQ(tokenizer->eos_ids(), std::vector<int32_t>{2});
  EXPECT_EQ(tokenizer->TokenText(1), "<s>");
}

TEST_F(SentencePieceTest, RoundTripsArbitraryUtf8) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 rng(17);
  std::vector<std::string> texts = {
      "the long context model reads whole books",
      "café über 日本語 — emoji \xF0\x9F\x98\x80 unseen ☃ characters",
      "  leading and  double  spaces, tabs\tand\nnewlines ",
      "digits 1234567890"};
  for (int i = 0; i < 50; ++i) texts.push_back(RandomUtf8(1 + rng() % 30, rng));
  for (const std::string& text : texts) {
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer->Encode(text);
    ASSERT_TRUE(ids.ok()) << ids.status();
    absl::StatusOr<std::string> decoded = tokenizer->Decode(*ids);
    ASSERT_TRUE(decoded.ok()) << decoded.status();
    EXPECT_EQ(*decoded, text);
  }
}

TEST_F(SentencePieceTest, CommonWordsTakeFewerTokensThanBytes) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  const std::string text = "the long context model reads whole books";
  EXPECT_LT(tokenizer->Encode(text)->size(), text.size() / 2);
}

TEST_F(SentencePieceTest, StreamEqualsDecodeForAnyChunking) {
  std::unique_ptr<Tokenizer> tokenizer = Load();
  ASSERT_NE(tokenizer, nullptr);
  std::mt19937 rng(23);
  for (int trial = 0; trial < 100; ++trial) {
    std::string text = trial % 2 ? "the model reads " : "";
    text += RandomUtf8(1 + rng() % 60, rng);
    text += " whole books and code bases";
    const std::vector<int32_t> ids = *tokenizer->Encode(text);
    EXPECT_EQ(PushAll(*tokenizer, ids, rng), text);
  }
}

TEST_F(SentencePieceTest, PaddedIdsAndSpecialsDecodeToNothing) {
  std::unique_ptr<Tokenizer> tokenizer = Load(512);
  ASSERT_NE(tokenizer, nullptr);
  std::vector<int32_t> ids = *tokenizer->Encode("books");
  ids.insert(ids.begin(), 1);  // bos
  ids.push_back(511);          // Beyond the pieces, inside the vocabulary.
  ids.push_back(2);            // eos
  EXPECT_EQ(*tokenizer->Decode(ids), "books");
  EXPECT_EQ(tokenizer->TokenText(511), "<unused:511>");
}

TEST_F(SentencePieceTest, MorePiecesThanTheVocabularyIsAnError) {
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer =
      LoadTokenizer(*dir_, Config(300));
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(tokenizer.status().message(),
              HasSubstr("more than the model's vocab_size 300"));
}

}  // namespace
}  // namespace longctx
