#include "kvblock/kv_layout.h"

#include "absl/strings/str_cat.h"

namespace longctx {

absl::StatusOr<KvDtype> ParseKvDtype(const std::string& text) {
  if (text == "f16") return KvDtype::kF16;
  if (text == "f32") return KvDtype::kF32;
  if (text == "bf16") return KvDtype::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("KV cache dtype \"", text, "\" is not f16, bf16 or f32"));
}

const char* KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF16:
      return "f16";
    case KvDtype::kF32:
      return "f32";
    case KvDtype::kBf16:
      return "bf16";
  }
  return "unknown";
}

}  // namespace longctx
