// tokenize_corpus: the C++ side of //tests/tokenizers:reference_test. Reads a
// model folder's tokenizer.json through longctx's loader and a corpus (a JSON
// array of base64 strings, any bytes) and prints, per entry, one JSON line in
// the format of reference/encode.mjs:
//   {"ids", "ids_special", "decoded", "decoded_skip"}
// plus "served": the ids the gateway's tokenizer (LoadTokenizer) gives, which
// must equal "ids".
//
// Usage: tokenize_corpus MODEL_DIR CORPUS_JSON
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/tokenizer.h"
#include "model/hf_tokenizer/hf_tokenizer.h"
#include "model/hf_tokenizer/utf8.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "tokenize_corpus: %s\n", message.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  if (argc != 3) return Fail("usage: tokenize_corpus MODEL_DIR CORPUS_JSON");
  const std::string dir = argv[1];
  absl::StatusOr<ModelConfig> config = LoadModelConfig(dir);
  if (!config.ok()) return Fail(std::string(config.status().message()));
  absl::StatusOr<std::unique_ptr<Tokenizer>> served =
      LoadTokenizer(dir, *config);
  if (!served.ok()) return Fail(std::string(served.status().message()));
  const auto* json_tokenizer =
      dynamic_cast<const JsonTokenizer*>(served->get());
  if (json_tokenizer == nullptr) return Fail(dir + " has no tokenizer.json");
  const HfTokenizer& hf = json_tokenizer->hf();

  absl::StatusOr<std::string> corpus_text = ReadFile(argv[2]);
  if (!corpus_text.ok())
    return Fail(std::string(corpus_text.status().message()));
  absl::StatusOr<nlohmann::json> corpus = ParseJson(*corpus_text, argv[2]);
  if (!corpus.ok() || !corpus->is_array())
    return Fail("corpus is not a JSON array");
  for (size_t i = 0; i < corpus->size(); ++i) {
    std::string text;
    if (!(*corpus)[i].is_string() ||
        !absl::Base64Unescape((*corpus)[i].get<std::string>(), &text)) {
      return Fail("corpus entry " + std::to_string(i) + " is not base64");
    }
    absl::StatusOr<std::vector<int32_t>> ids = hf.Encode(text, false);
    absl::StatusOr<std::vector<int32_t>> ids_special = hf.Encode(text, true);
    absl::StatusOr<std::vector<int32_t>> served_ids = (*served)->Encode(text);
    if (!ids.ok() || !ids_special.ok() || !served_ids.ok()) {
      return Fail(
          "corpus entry " + std::to_string(i) + ": " +
          std::string(
              (!ids.ok() ? ids.status() : ids_special.status()).message()));
    }
    const nlohmann::json line = {
        {"ids", *ids},
        {"ids_special", *ids_special},
        {"decoded", SanitizeUtf8(hf.Decode(*ids, false))},
        {"decoded_skip", SanitizeUtf8(hf.Decode(*ids_special, true))},
        {"served", *served_ids}};
    std::printf("%s\n", line.dump().c_str());
  }
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) { return longctx::Main(argc, argv); }
