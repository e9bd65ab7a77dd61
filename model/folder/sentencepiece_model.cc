#include "model/folder/sentencepiece_model.h"

#include "model/folder/sentencepiece_library.h"

namespace longctx {

SentencePieceModel::~SentencePieceModel() {
  if (model_ != nullptr) library_->release(model_);
}

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(
    const std::string& path, std::string* error) {
  const SentencePieceLibrary* library = GetSentencePieceLibrary(error);
  if (library == nullptr) return nullptr;
  char* message = nullptr;
  void* handle = library->load(path.c_str(), &message);
  if (handle == nullptr) {
    *error = TakeString(*library, message);
    return nullptr;
  }
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel());
  model->library_ = library;
  model->model_ = handle;
  return model;
}

int SentencePieceModel::piece_size() const {
  return library_->piece_size(model_);
}

int SentencePieceModel::bos_id() const { return library_->bos_id(model_); }

int SentencePieceModel::eos_id() const { return library_->eos_id(model_); }

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  int* out = nullptr;
  size_t count = 0;
  char* message = nullptr;
  if (library_->encode(model_, text.data(), text.size(), &out, &count,
                       &message) != 0) {
    *error = TakeString(*library_, message);
    return false;
  }
  ids->assign(out, out + count);
  library_->free_buffer(out);
  return true;
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  char* out = nullptr;
  size_t size = 0;
  char* message = nullptr;
  if (library_->decode(model_, ids.data(), ids.size(), &out, &size, &message) !=
      0) {
    *error = TakeString(*library_, message);
    return false;
  }
  text->assign(out, size);
  library_->free_buffer(out);
  return true;
}

std::string SentencePieceModel::IdToPiece(int id) const {
  return TakeString(*library_, library_->id_to_piece(model_, id));
}

bool SentencePieceModel::IsControl(int id) const {
  return library_->is_control(model_, id) != 0;
}

}  // namespace longctx
