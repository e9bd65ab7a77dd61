// KvLayout: the shape of one KV block, shared by the worker's pool, the block
// format of the memory store and the model.
#ifndef LONGCTX_KVBLOCK_KV_LAYOUT_H_
#define LONGCTX_KVBLOCK_KV_LAYOUT_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace longctx {

// KvDtype is the element type of cached keys and values. kBf16 has fp16's
// size and fp32's range with 8 bits of mantissa (fp16: 11); CPUs with
// AVX512_BF16 multiply it without converting (--compute_precision=bf16).
enum class KvDtype { kF16, kF32, kBf16 };

// ParseKvDtype accepts "f16", "f32" and "bf16"; KvDtypeName gives them back.
absl::StatusOr<KvDtype> ParseKvDtype(const std::string& text);
const char* KvDtypeName(KvDtype dtype);

// KvLayout is the shape of one block.
struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 256;  // Tokens per block (B).
  KvDtype dtype = KvDtype::kF16;

  size_t ElementBytes() const { return dtype == KvDtype::kF32 ? 4 : 2; }
  // Bytes of K (or V) of one layer of one block.
  size_t TensorBytes() const {
    return static_cast<size_t>(num_kv_heads) * block_size * head_dim *
           ElementBytes();
  }
  // Bytes of K and V of one layer of one block.
  size_t LayerBytes() const { return 2 * TensorBytes(); }
  // Bytes of one block.
  size_t BlockBytes() const { return LayerBytes() * num_layers; }
};

}  // namespace longctx

#endif  // LONGCTX_KVBLOCK_KV_LAYOUT_H_
