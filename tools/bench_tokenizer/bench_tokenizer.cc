// bench_tokenizer: encoding speed of a long document (10 MB by default) with
// tokenizer.json in each family's layout, against libsentencepiece (the
// tokenizer.model path) on the same text in the same run. Prints a markdown
// table (docs/BENCHMARKS.md, section "tokenizer").
//
// The document: the tokenizers' training text (model/hf_tokenizer), its
// paragraphs in a seeded shuffled order, with seeded numbers and words
// between them, repeated up to the size. Every tokenizer has the same number
// of merges or pieces (--merges), learned from that training text.
//
//   bazel run -c opt //tools/bench_tokenizer -- --mb=10
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "model/folder/io_util.h"
#include "model/folder/sentencepiece_training.h"
#include "model/folder/tokenizer.h"
#include "model/hf_tokenizer/hf_tokenizer.h"
#include "model/hf_tokenizer/tokenizer_families.h"
#include "model/hf_tokenizer/training_text.h"

ABSL_FLAG(double, mb, 10, "Document size in MB (10^6 bytes).");
ABSL_FLAG(int, merges, 4000, "BPE merges of each tokenizer.");
ABSL_FLAG(int, repeats, 2, "Encodes per tokenizer; the fastest counts.");
ABSL_FLAG(std::string, dir, "/tmp/bench_tokenizer",
          "Folder for the SentencePiece model.");

namespace longctx {
namespace {

std::string MakeDocument(size_t bytes) {
  std::vector<std::string> paragraphs =
      absl::StrSplit(TokenizerTrainingText(), "\n\n", absl::SkipEmpty());
  std::mt19937 rng(7);
  std::string doc;
  doc.reserve(bytes + 4096);
  while (doc.size() < bytes) {
    std::shuffle(paragraphs.begin(), paragraphs.end(), rng);
    for (const std::string& paragraph : paragraphs) {
      doc += paragraph;
      doc += absl::StrFormat("\n\nSection %u.%u, page %u: ", rng() % 100,
                             rng() % 10, rng() % 1000);
      if (doc.size() >= bytes) break;
    }
  }
  doc.resize(bytes);
  // Not cut inside a character.
  while (!doc.empty() &&
         (static_cast<unsigned char>(doc.back()) & 0xC0) == 0x80) {
    doc.pop_back();
  }
  if (!doc.empty() && static_cast<unsigned char>(doc.back()) >= 0xC0) {
    doc.pop_back();
  }
  return doc;
}

struct Result {
  std::string name;
  size_t tokens = 0;
  double seconds = 0;
};

template <typename Encode>
Result Time(const std::string& name, Encode encode) {
  Result result{name};
  for (int r = 0; r < absl::GetFlag(FLAGS_repeats); ++r) {
    const auto start = std::chrono::steady_clock::now();
    result.tokens = encode();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    if (r == 0 || seconds < result.seconds) result.seconds = seconds;
  }
  return result;
}

int Main() {
  const size_t bytes = static_cast<size_t>(absl::GetFlag(FLAGS_mb) * 1e6);
  const int merges = absl::GetFlag(FLAGS_merges);
  const std::string doc = MakeDocument(bytes);
  std::vector<Result> results;

  // Baseline: libsentencepiece, BPE with as many pieces as the others have
  // merges, trained on the same text.
  const std::string dir = absl::GetFlag(FLAGS_dir);
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    std::fprintf(stderr, "bench_tokenizer: cannot create %s\n", dir.c_str());
    return 1;
  }
  const std::string corpus = JoinPath(dir, "training_text.txt");
  if (!WriteFileAtomically(corpus, TokenizerTrainingText()).ok()) return 1;
  std::string error;
  if (!TrainSentencePieceModel(corpus, JoinPath(dir, "tokenizer"), merges + 259,
                               &error)) {
    std::fprintf(stderr, "bench_tokenizer: %s\n", error.c_str());
    return 1;
  }
  ModelConfig config;
  config.vocab_size = 200000;
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> sentencepiece =
      SentencePieceTokenizer::Load(JoinPath(dir, "tokenizer.model"), config);
  if (!sentencepiece.ok()) {
    std::fprintf(stderr, "bench_tokenizer: %s\n",
                 std::string(sentencepiece.status().message()).c_str());
    return 1;
  }
  results.push_back(
      Time("SentencePiece BPE (tokenizer.model, libsentencepiece)",
           [&] { return (*sentencepiece)->Encode(doc)->size(); }));

  for (const char* name : {"llama3", "qwen2", "mistral", "llama2"}) {
    absl::StatusOr<FamilyTokenizer> made = MakeFamilyTokenizer(
        *ParseTokenizerFamily(name), merges, TokenizerTrainingText());
    if (!made.ok()) return 1;
    absl::StatusOr<std::unique_ptr<HfTokenizer>> tokenizer =
        HfTokenizer::FromJson(made->tokenizer);
    if (!tokenizer.ok()) return 1;
    results.push_back(
        Time(absl::StrFormat("tokenizer.json, %s layout", name),
             [&] { return (*tokenizer)->Encode(doc, false)->size(); }));
  }

  std::printf(
      "**Encoding one %.1f MB document, %d merges per tokenizer, fastest of "
      "%d**\n\n",
      doc.size() / 1e6, merges, absl::GetFlag(FLAGS_repeats));
  std::printf(
      "| tokenizer | tokens | seconds | MB/s | tokens/s | speed vs "
      "SentencePiece |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const Result& result : results) {
    std::printf(
        "| %s | %zu | %.2f | %.1f | %.0f | %.2fx |\n", result.name.c_str(),
        result.tokens, result.seconds, doc.size() / 1e6 / result.seconds,
        result.tokens / result.seconds, results[0].seconds / result.seconds);
  }
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return longctx::Main();
}
