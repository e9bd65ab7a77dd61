#include "kvblock/kv_layout.h"

#include "absl/strings/str_cat.h"

namespace longctx {

absl::StatusOr<KvDtype> ParseKvDtype(const std::string& text) {
  if (text == "f16") return KvDtype::kF16;
  if (text == "f32") return KvDtype::kF32;
  return absl::InvalidArgumentError(
      absl::StrCat("KV cache dtype \"", text, "\" is not f16 or f32"));
}

const char* KvDtypeName(KvDtype dtype) {
  return dtype == KvDtype::kF16 ? "f16" : "f32";
}

}  // namespace longctx
