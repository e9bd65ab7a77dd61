// OpenModelSource: checks and opens the model folder a worker serves.
#ifndef LONGCTX_SERVICES_WORKER_MODEL_SOURCE_H_
#define LONGCTX_SERVICES_WORKER_MODEL_SOURCE_H_

#include <string>

#include "absl/status/statusor.h"

namespace longctx {

// ModelSource is an opened model folder.
struct ModelSource {
  std::string dir;              // The folder.
  std::string fingerprint_hex;  // Hex of the model fingerprint.
};

// OpenModelSource opens `dir`. Errors name --model: an empty flag, a missing
// folder or a folder without config.json.
absl::StatusOr<ModelSource> OpenModelSource(const std::string& dir);

}  // namespace longctx

#endif  // LONGCTX_SERVICES_WORKER_MODEL_SOURCE_H_
