// SentencePieceModel wraps libsentencepiece's processor behind an interface of
// standard types only.
//
// Why a wrapper: sentencepiece_processor.h declares `namespace absl { using
// std::string_view; }`, which collides with the system Abseil's own
// absl::string_view, so no translation unit may include both. Only
// sentencepiece_model.cc includes libsentencepiece; this header includes no
// Abseil and no sentencepiece header.
#ifndef LONGCTX_SERVICES_MODEL_SENTENCEPIECE_MODEL_H_
#define LONGCTX_SERVICES_MODEL_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace longctx {

// SentencePieceModel is a loaded tokenizer.model. Immutable after Load; its
// const methods are thread-safe.
class SentencePieceModel {
 public:
  // Load reads a serialized SentencePiece model from `path`. Returns null and
  // sets *error to the library's message on failure.
  static std::unique_ptr<SentencePieceModel> Load(const std::string& path,
                                                  std::string* error);
  ~SentencePieceModel();

  // The number of pieces; ids are [0, piece_size()).
  int piece_size() const;
  // The model's own special ids, -1 when it has none.
  int bos_id() const;
  int eos_id() const;

  // Encode appends nothing special (no bos/eos). Returns false and sets
  // *error on failure.
  bool Encode(std::string_view text, std::vector<int>* ids,
              std::string* error) const;
  // Decode turns ids in [0, piece_size()) into text; control pieces render as
  // nothing, byte pieces as their bytes (the library replaces bytes that do
  // not form UTF-8 with U+FFFD). Returns false and sets *error on failure.
  bool Decode(const std::vector<int>& ids, std::string* text,
              std::string* error) const;
  // The piece of `id` as stored ("▁Hello", "<0xE2>", "<s>").
  std::string IdToPiece(int id) const;
  bool IsControl(int id) const;

 private:
  SentencePieceModel();

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_MODEL_SENTENCEPIECE_MODEL_H_
