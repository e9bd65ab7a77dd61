// OpenModelSource: opens the Hugging Face model folder a worker serves and
// describes it for LlamaModel (shape, tensor pointers into the memory-mapped
// files).
#ifndef LONGCTX_MODEL_MODEL_SOURCE_H_
#define LONGCTX_MODEL_MODEL_SOURCE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "kvblock/hash128.h"
#include "model/llama_model.h"

namespace longctx {

// ModelSource is an opened model folder. `weights` points into memory the
// source keeps mapped; LlamaModel::Create copies what it needs.
struct ModelSource {
  std::string dir;
  std::string architecture;  // e.g. "LlamaForCausalLM".
  Hash128 fingerprint;
  std::string fingerprint_hex;  // 32 hex digits.
  LlamaShape shape;
  LlamaWeights weights;
  std::shared_ptr<const void>
      keep_alive;  // Owns the mappings behind `weights`.
};

// OpenModelSource opens `dir`. Errors name --model and the problem: an empty
// flag, a missing folder or config.json, an unsupported architecture or dtype,
// a missing tensor, a shape mismatch, a truncated or corrupt file.
absl::StatusOr<ModelSource> OpenModelSource(const std::string& dir);

}  // namespace longctx

#endif  // LONGCTX_MODEL_MODEL_SOURCE_H_
