// SentencePieceModel wraps libsentencepiece's processor behind an interface of
// standard types only.
//
// Why a wrapper: libsentencepiece runs in libsentencepiece_shim.so, loaded with
// deep binding (see sentencepiece_library.h), because Debian's build embeds a
// protobuf that clashes with libprotobuf; and sentencepiece_processor.h
// declares `namespace absl { using std::string_view; }`, which collides with
// the system Abseil. This header includes neither.
#ifndef LONGCTX_MODEL_FOLDER_SENTENCEPIECE_MODEL_H_
#define LONGCTX_MODEL_FOLDER_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace longctx {

// SentencePieceModel is a loaded tokenizer.model. Immutable after Load; its
// const methods are thread-safe.
class SentencePieceModel {
 public:
  // Load reads a serialized SentencePiece model from `path`. Returns null and
  // sets *error to the library's message on failure (also when the shim library
  // cannot be found).
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
  SentencePieceModel() = default;

  const struct SentencePieceLibrary* library_ = nullptr;
  void* model_ = nullptr;  // Owned; released through library_.
};

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_SENTENCEPIECE_MODEL_H_
