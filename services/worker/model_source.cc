#include "services/worker/model_source.h"

#include <sys/stat.h>

#include "absl/strings/str_cat.h"

namespace longctx {

absl::StatusOr<ModelSource> OpenModelSource(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--model is required: a Hugging Face model folder (make one with "
        "tools/make_tiny_model)");
  }
  struct stat info {};
  if (stat(dir.c_str(), &info) != 0 || !S_ISDIR(info.st_mode)) {
    return absl::NotFoundError(
        absl::StrCat("--model=", dir, " is not a folder"));
  }
  std::string config = absl::StrCat(dir, "/config.json");
  if (stat(config.c_str(), &info) != 0) {
    return absl::NotFoundError(
        absl::StrCat("--model=", dir, " has no config.json"));
  }
  ModelSource source;
  source.dir = dir;
  return source;
}

}  // namespace longctx
