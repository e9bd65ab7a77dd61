#include "services/model/sentencepiece_model.h"

// No Abseil header may be included here (see the header).
#include <sentencepiece_processor.h>

namespace longctx {

SentencePieceModel::SentencePieceModel()
    : processor_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {}

SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(
    const std::string& path, std::string* error) {
  std::unique_ptr<SentencePieceModel> model(new SentencePieceModel());
  const sentencepiece::util::Status status = model->processor_->Load(path);
  if (!status.ok()) {
    *error = status.ToString();
    return nullptr;
  }
  return model;
}

int SentencePieceModel::piece_size() const {
  return processor_->GetPieceSize();
}

int SentencePieceModel::bos_id() const { return processor_->bos_id(); }

int SentencePieceModel::eos_id() const { return processor_->eos_id(); }

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  const sentencepiece::util::Status status = processor_->Encode(text, ids);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

bool SentencePieceModel::Decode(const std::vector<int>& ids, std::string* text,
                                std::string* error) const {
  const sentencepiece::util::Status status = processor_->Decode(ids, text);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

std::string SentencePieceModel::IdToPiece(int id) const {
  return processor_->IdToPiece(id);
}

bool SentencePieceModel::IsControl(int id) const {
  return processor_->IsControl(id);
}

}  // namespace longctx
