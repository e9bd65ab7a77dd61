// libsentencepiece_shim.so: libsentencepiece behind a C interface, built as its
// own shared library and loaded by sentencepiece_model.cc with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND).
//
// Why: Debian's libsentencepiece embeds (and exports) protobuf-lite 3.14, while
// gRPC and our protos use libprotobuf 3.21. In one symbol namespace the two
// bind to each other's symbols whichever loads first: the process crashes at
// start-up or on the first model load. Deep binding keeps this library and
// libsentencepiece on their own protobuf. Only standard types cross the
// boundary; buffers returned here are freed with lctx_spm_free_buffer.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

void SetError(const sentencepiece::util::Status& status, char** error) {
  if (error != nullptr) *error = strdup(status.ToString().c_str());
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) void* lctx_spm_load(const char* path,
                                                           char** error) {
  auto* processor = new sentencepiece::SentencePieceProcessor();
  const sentencepiece::util::Status status = processor->Load(path);
  if (!status.ok()) {
    SetError(status, error);
    delete processor;
    return nullptr;
  }
  return processor;
}

__attribute__((visibility("default"))) void lctx_spm_release(void* model) {
  delete static_cast<sentencepiece::SentencePieceProcessor*>(model);
}

__attribute__((visibility("default"))) void lctx_spm_free_buffer(void* buffer) {
  std::free(buffer);
}

__attribute__((visibility("default"))) int lctx_spm_piece_size(
    const void* model) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(model)
      ->GetPieceSize();
}

__attribute__((visibility("default"))) int lctx_spm_bos_id(const void* model) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(model)
      ->bos_id();
}

__attribute__((visibility("default"))) int lctx_spm_eos_id(const void* model) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(model)
      ->eos_id();
}

__attribute__((visibility("default"))) int lctx_spm_is_control(
    const void* model, int id) {
  return static_cast<const sentencepiece::SentencePieceProcessor*>(model)
      ->IsControl(id);
}

// Encodes text[0, size); *ids (malloc'ed) receives *count ids. 0 on success.
__attribute__((visibility("default"))) int lctx_spm_encode(
    const void* model, const char* text, size_t size, int** ids, size_t* count,
    char** error) {
  std::vector<int> out;
  const sentencepiece::util::Status status =
      static_cast<const sentencepiece::SentencePieceProcessor*>(model)->Encode(
          std::string(text, size), &out);
  if (!status.ok()) {
    SetError(status, error);
    return 1;
  }
  *count = out.size();
  *ids = static_cast<int*>(std::malloc(sizeof(int) * (out.size() + 1)));
  std::memcpy(*ids, out.data(), sizeof(int) * out.size());
  return 0;
}

// Decodes ids; *text (malloc'ed) receives *size bytes. 0 on success.
__attribute__((visibility("default"))) int lctx_spm_decode(
    const void* model, const int* ids, size_t count, char** text, size_t* size,
    char** error) {
  std::string out;
  const sentencepiece::util::Status status =
      static_cast<const sentencepiece::SentencePieceProcessor*>(model)->Decode(
          std::vector<int>(ids, ids + count), &out);
  if (!status.ok()) {
    SetError(status, error);
    return 1;
  }
  *size = out.size();
  *text = static_cast<char*>(std::malloc(out.size() + 1));
  std::memcpy(*text, out.data(), out.size());
  return 0;
}

// The piece of `id` (malloc'ed, NUL-terminated).
__attribute__((visibility("default"))) char* lctx_spm_id_to_piece(
    const void* model, int id) {
  return strdup(static_cast<const sentencepiece::SentencePieceProcessor*>(model)
                    ->IdToPiece(id)
                    .c_str());
}

// Trains a model with SentencePieceTrainer's flag string. 0 on success.
__attribute__((visibility("default"))) int lctx_spm_train(const char* args,
                                                          char** error) {
  const sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    SetError(status, error);
    return 1;
  }
  return 0;
}

}  // extern "C"
