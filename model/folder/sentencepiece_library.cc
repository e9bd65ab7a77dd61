#include "model/folder/sentencepiece_library.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <vector>

namespace longctx {
namespace {

constexpr char kShimName[] = "libsentencepiece_shim.so";

std::string ExecutablePath() {
  std::vector<char> buffer(4096);
  ssize_t n = readlink("/proc/self/exe", buffer.data(), buffer.size() - 1);
  return n > 0 ? std::string(buffer.data(), static_cast<size_t>(n)) : "";
}

std::vector<std::string> Candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("LONGCTX_SENTENCEPIECE_SHIM"))
    out.push_back(env);
  const std::string exe = ExecutablePath();
  const std::string dir = exe.substr(0, exe.rfind('/'));
  out.push_back(dir + "/" + kShimName);
  for (const char* workspace : {"longctx", "__main__"}) {
    out.push_back(exe + ".runfiles/" + workspace + "/model/folder/" +
                  kShimName);
  }
  if (const char* srcdir = std::getenv("TEST_SRCDIR")) {
    out.push_back(std::string(srcdir) + "/longctx/model/folder/" + kShimName);
  }
  // bazel-bin/<a>/<b>/<binary> (or one folder less deep) next to
  // bazel-bin/model/folder/.
  out.push_back(dir + "/../../model/folder/" + kShimName);
  out.push_back(dir + "/../model/folder/" + kShimName);
  return out;
}

template <typename T>
bool Bind(void* handle, const char* name, T* function) {
  *function = reinterpret_cast<T>(dlsym(handle, name));
  return *function != nullptr;
}

}  // namespace

const SentencePieceLibrary* GetSentencePieceLibrary(std::string* error) {
  static std::once_flag once;
  static SentencePieceLibrary* library = nullptr;
  static std::string* load_error = new std::string();
  std::call_once(once, [] {
    std::string tried;
    void* handle = nullptr;
    for (const std::string& path : Candidates()) {
      if (access(path.c_str(), R_OK) != 0) {
        tried += (tried.empty() ? "" : ", ") + path;
        continue;
      }
      handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
      if (handle != nullptr) break;
      tried += (tried.empty() ? "" : ", ") + path + " (" + dlerror() + ")";
    }
    if (handle == nullptr) {
      *load_error = std::string("SentencePiece support library ") + kShimName +
                    " not found; looked in: " + tried +
                    " (set LONGCTX_SENTENCEPIECE_SHIM)";
      return;
    }
    auto* lib = new SentencePieceLibrary();
    if (!Bind(handle, "lctx_spm_load", &lib->load) ||
        !Bind(handle, "lctx_spm_release", &lib->release) ||
        !Bind(handle, "lctx_spm_free_buffer", &lib->free_buffer) ||
        !Bind(handle, "lctx_spm_piece_size", &lib->piece_size) ||
        !Bind(handle, "lctx_spm_bos_id", &lib->bos_id) ||
        !Bind(handle, "lctx_spm_eos_id", &lib->eos_id) ||
        !Bind(handle, "lctx_spm_is_control", &lib->is_control) ||
        !Bind(handle, "lctx_spm_encode", &lib->encode) ||
        !Bind(handle, "lctx_spm_decode", &lib->decode) ||
        !Bind(handle, "lctx_spm_id_to_piece", &lib->id_to_piece) ||
        !Bind(handle, "lctx_spm_train", &lib->train)) {
      *load_error = std::string(kShimName) + " lacks a function: " + dlerror();
      delete lib;
      return;
    }
    library = lib;
  });
  if (library == nullptr && error != nullptr) *error = *load_error;
  return library;
}

std::string TakeString(const SentencePieceLibrary& library, char* buffer) {
  if (buffer == nullptr) return "";
  std::string out(buffer);
  library.free_buffer(buffer);
  return out;
}

}  // namespace longctx
