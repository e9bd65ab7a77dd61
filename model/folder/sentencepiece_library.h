// SentencePieceLibrary: the functions of libsentencepiece_shim.so (see
// sentencepiece_shim.cc), loaded once per process with dlopen(RTLD_LOCAL |
// RTLD_DEEPBIND) so that Debian's libsentencepiece, which embeds its own
// protobuf, never shares symbols with libprotobuf.
#ifndef LONGCTX_MODEL_FOLDER_SENTENCEPIECE_LIBRARY_H_
#define LONGCTX_MODEL_FOLDER_SENTENCEPIECE_LIBRARY_H_

#include <cstddef>
#include <string>

namespace longctx {

struct SentencePieceLibrary {
  void* (*load)(const char* path, char** error);
  void (*release)(void* model);
  void (*free_buffer)(void* buffer);
  int (*piece_size)(const void* model);
  int (*bos_id)(const void* model);
  int (*eos_id)(const void* model);
  int (*is_control)(const void* model, int id);
  int (*encode)(const void* model, const char* text, size_t size, int** ids,
                size_t* count, char** error);
  int (*decode)(const void* model, const int* ids, size_t count, char** text,
                size_t* size, char** error);
  char* (*id_to_piece)(const void* model, int id);
  int (*train)(const char* args, char** error);
};

// GetSentencePieceLibrary loads the shim on first use (thread-safe) and returns
// it, or null with *error naming the places searched:
// $LONGCTX_SENTENCEPIECE_SHIM, the executable's folder, its Bazel runfiles, and
// bazel-bin/model/folder.
const SentencePieceLibrary* GetSentencePieceLibrary(std::string* error);

// TakeString copies a buffer the shim returned and frees it.
std::string TakeString(const SentencePieceLibrary& library, char* buffer);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_SENTENCEPIECE_LIBRARY_H_
