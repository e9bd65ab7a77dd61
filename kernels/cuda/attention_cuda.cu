#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>

#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/cuda_util.cuh"

namespace longctx::kernels::cuda {
namespace {

using internal::LoadF32;
using internal::WarpMax;
using internal::WarpSum;

constexpr int kThreads = 128;  // Four warps.
constexpr int kMaxHeadDim = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Args {
  const float* q;
  int64_t q_stride;
  float* o;
  int64_t o_stride;
  float* lse;
  const void* const* k_blocks;
  const void* const* v_blocks;
  int block_size;
  int head_dim;
  int group;  // Query heads per kv head (G).
  int num_heads;
  int64_t rows_total;  // n_q * G: rows are (token, query head of the group).
  int n_kv;
  int64_t q_offset;  // q_start_pos - kv.start_pos.
  bool causal;
  float scale_log2;  // scale * log2(e): the softmax runs in log2 units.
  int bm;            // Rows per tile.
  int bn;            // Keys per tile (<= 32: one key per lane in the softmax).
};

// Floats of dynamic shared memory for a bm x bn tile of head_dim d (the int
// array of visible-key counts counts as floats).
size_t SmemFloats(int bm, int bn, int d) {
  return static_cast<size_t>(bm) * d           // Q tile.
         + static_cast<size_t>(bn) * (d + 1)   // K tile, rows padded.
         + static_cast<size_t>(bn) * d         // V tile.
         + static_cast<size_t>(bm) * d         // O accumulator.
         + static_cast<size_t>(bm) * (bn + 1)  // Scores / probabilities.
         + 4 * static_cast<size_t>(bm);        // m, l, alpha, visible.
}

// VisibleKeys returns how many leading keys query token i sees.
__device__ __forceinline__ int VisibleKeys(const Args& a, int64_t i) {
  if (!a.causal) return a.n_kv;
  const int64_t v = a.q_offset + i + 1;
  if (v <= 0) return 0;
  return v >= a.n_kv ? a.n_kv : static_cast<int>(v);
}

template <DType T>
__global__ void __launch_bounds__(kThreads) FlashAttentionKernel(const Args a) {
  extern __shared__ float smem[];
  const int d = a.head_dim;
  const int bm = a.bm;
  const int bn = a.bn;
  const int k_stride = d + 1;  // Odd for even d: column reads avoid conflicts.
  const int s_stride = bn + 1;
  float* q_tile = smem;                    // [bm][d], pre-scaled.
  float* k_tile = q_tile + bm * d;         // [bn][d + 1]
  float* v_tile = k_tile + bn * k_stride;  // [bn][d]
  float* o_acc = v_tile + bn * d;          // [bm][d]
  float* s = o_acc + bm * d;               // [bm][bn + 1]
  float* m = s + bm * s_stride;            // [bm] running max (log2 units)
  float* l = m + bm;                       // [bm] running sum
  float* alpha = l + bm;                   // [bm] rescale of this key tile
  int* visible = reinterpret_cast<int*>(alpha + bm);  // [bm]

  const int tid = threadIdx.x;
  const int kv_head = blockIdx.y;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * bm;

  for (int r = tid; r < bm; r += blockDim.x) {
    const int64_t row = row0 + r;
    m[r] = -INFINITY;
    l[r] = 0.0f;
    visible[r] = row < a.rows_total ? VisibleKeys(a, row / a.group) : 0;
  }
  for (int idx = tid; idx < bm * d; idx += blockDim.x) {
    const int r = idx / d;
    const int x = idx - r * d;
    const int64_t row = row0 + r;
    float value = 0.0f;
    if (row < a.rows_total) {
      const int64_t i = row / a.group;
      const int head = kv_head * a.group + static_cast<int>(row % a.group);
      value = a.q[i * a.q_stride + static_cast<int64_t>(head) * d + x] *
              a.scale_log2;
    }
    q_tile[idx] = value;
    o_acc[idx] = 0.0f;
  }
  // Visible counts grow with the row's token, so the tile's last row sees the
  // most keys: tiles of keys past it are wholly in the causal future.
  const int64_t last_row =
      (row0 + bm < a.rows_total ? row0 + bm : a.rows_total) - 1;
  const int kv_end = VisibleKeys(a, last_row / a.group);
  __syncthreads();

  const int warp = tid / 32;
  const int lane = tid % 32;
  const int warps = blockDim.x / 32;
  for (int j0 = 0; j0 < kv_end; j0 += bn) {
    const int keys = min(bn, kv_end - j0);
    // K and V tiles, converted to fp32; slots past the last key are zero.
    for (int idx = tid; idx < bn * d; idx += blockDim.x) {
      const int c = idx / d;
      const int x = idx - c * d;
      float kx = 0.0f;
      float vx = 0.0f;
      if (c < keys) {
        const int t = j0 + c;
        const int block = t / a.block_size;
        const int slot = t - block * a.block_size;
        const size_t offset =
            (static_cast<size_t>(kv_head) * a.block_size + slot) * d + x;
        kx = LoadF32<T>(a.k_blocks[block], offset);
        vx = LoadF32<T>(a.v_blocks[block], offset);
      }
      k_tile[c * k_stride + x] = kx;
      v_tile[c * d + x] = vx;
    }
    __syncthreads();
    // Scores in log2 units; hidden keys (and padding rows) get -inf.
    for (int idx = tid; idx < bm * bn; idx += blockDim.x) {
      const int r = idx / bn;
      const int c = idx - r * bn;
      float score = -INFINITY;
      if (j0 + c < visible[r]) {  // visible[r] <= kv_end, so c < keys.
        const float* qr = q_tile + r * d;
        const float* kc = k_tile + c * k_stride;
        float acc = 0.0f;
        for (int x = 0; x < d; ++x) acc = fmaf(qr[x], kc[x], acc);
        score = acc;
      }
      s[r * s_stride + c] = score;
    }
    __syncthreads();
    // Online softmax, one warp per row: new maximum, probabilities in place of
    // the scores, rescale factor of the earlier accumulation.
    for (int r = warp; r < bm; r += warps) {
      float* sr = s + r * s_stride;
      const float score = lane < bn ? sr[lane] : -INFINITY;
      const float m_old = m[r];
      const float m_new = fmaxf(m_old, WarpMax(score));
      float p = 0.0f;
      if (score != -INFINITY) p = exp2f(score - m_new);  // m_new is finite.
      if (lane < bn) sr[lane] = p;
      const float sum = WarpSum(p);
      if (lane == 0) {
        // m_old = -inf (nothing seen yet) gives 0; m_new = -inf (still
        // nothing) keeps the empty state.
        const float rescale = m_new == -INFINITY ? 1.0f : exp2f(m_old - m_new);
        alpha[r] = rescale;
        l[r] = l[r] * rescale + sum;
        m[r] = m_new;
      }
    }
    __syncthreads();
    // O = O * alpha + P V.
    for (int idx = tid; idx < bm * d; idx += blockDim.x) {
      const int r = idx / d;
      const int x = idx - r * d;
      const float* pr = s + r * s_stride;
      float acc = o_acc[idx] * alpha[r];
      for (int c = 0; c < keys; ++c) acc = fmaf(pr[c], v_tile[c * d + x], acc);
      o_acc[idx] = acc;
    }
    __syncthreads();
  }

  for (int idx = tid; idx < bm * d; idx += blockDim.x) {
    const int r = idx / d;
    const int x = idx - r * d;
    const int64_t row = row0 + r;
    if (row >= a.rows_total) continue;
    const int64_t i = row / a.group;
    const int head = kv_head * a.group + static_cast<int>(row % a.group);
    a.o[i * a.o_stride + static_cast<int64_t>(head) * d + x] =
        l[r] > 0.0f ? o_acc[idx] / l[r] : 0.0f;
  }
  if (a.lse != nullptr) {
    for (int r = tid; r < bm; r += blockDim.x) {
      const int64_t row = row0 + r;
      if (row >= a.rows_total) continue;
      const int64_t i = row / a.group;
      const int head = kv_head * a.group + static_cast<int>(row % a.group);
      a.lse[i * a.num_heads + head] =
          l[r] > 0.0f ? (m[r] + log2f(l[r])) * kLn2 : -INFINITY;
    }
  }
}

template <DType T>
cudaError_t Launch(const Args& args, int num_kv_heads, int max_smem_bytes,
                   cudaStream_t stream) {
  Args a = args;
  // The largest square tile that fits the device's shared memory.
  size_t bytes = 0;
  for (int tile : {32, 16, 8}) {
    bytes = SmemFloats(tile, tile, a.head_dim) * sizeof(float);
    a.bm = tile;
    a.bn = tile;
    if (bytes <= static_cast<size_t>(max_smem_bytes)) break;
  }
  if (bytes > static_cast<size_t>(max_smem_bytes)) {
    return cudaErrorInvalidConfiguration;
  }
  if (bytes > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(
        FlashAttentionKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(bytes));
    if (e != cudaSuccess) return e;
  }
  const int64_t tiles = (a.rows_total + a.bm - 1) / a.bm;
  if (tiles > std::numeric_limits<int32_t>::max()) return cudaErrorInvalidValue;
  const dim3 grid(static_cast<unsigned>(tiles),
                  static_cast<unsigned>(num_kv_heads));
  FlashAttentionKernel<T><<<grid, kThreads, bytes, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace

cudaError_t FlashAttention(const float* q, int64_t n_q, int64_t q_stride,
                           const PagedKv& kv, const AttentionParams& params,
                           float* o, int64_t o_stride, float* lse,
                           cudaStream_t stream) {
  const int d = kv.head_dim;
  if (kv.num_kv_heads <= 0 || params.num_heads <= 0 ||
      params.num_heads % kv.num_kv_heads != 0 || kv.num_kv_heads > 65535) {
    return cudaErrorInvalidValue;
  }
  if (d < 1 || d > kMaxHeadDim) return cudaErrorInvalidValue;
  if (n_q < 0 || kv.num_tokens < 0 || kv.block_size <= 0 ||
      kv.num_tokens > std::numeric_limits<int32_t>::max() ||
      q_stride < static_cast<int64_t>(params.num_heads) * d ||
      o_stride < static_cast<int64_t>(params.num_heads) * d) {
    return cudaErrorInvalidValue;
  }
  if (n_q == 0) return cudaSuccess;
  if (q == nullptr || o == nullptr ||
      (kv.num_tokens > 0 &&
       (kv.k_blocks == nullptr || kv.v_blocks == nullptr))) {
    return cudaErrorInvalidValue;
  }
  int device = 0;
  cudaError_t e = cudaGetDevice(&device);
  if (e != cudaSuccess) return e;
  int max_smem = 0;
  e = cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                             device);
  if (e != cudaSuccess) return e;

  Args a{};
  a.q = q;
  a.q_stride = q_stride;
  a.o = o;
  a.o_stride = o_stride;
  a.lse = lse;
  a.k_blocks = kv.k_blocks;
  a.v_blocks = kv.v_blocks;
  a.block_size = kv.block_size;
  a.head_dim = d;
  a.group = params.num_heads / kv.num_kv_heads;
  a.num_heads = params.num_heads;
  a.rows_total = n_q * a.group;
  a.n_kv = static_cast<int>(kv.num_tokens);
  a.q_offset = params.q_start_pos - kv.start_pos;
  a.causal = params.causal;
  const float scale = params.scale != 0.0f
                          ? params.scale
                          : 1.0f / std::sqrt(static_cast<float>(d));
  a.scale_log2 = scale * kLog2e;
  switch (kv.dtype) {
    case DType::kF32:
      return Launch<DType::kF32>(a, kv.num_kv_heads, max_smem, stream);
    case DType::kF16:
      return Launch<DType::kF16>(a, kv.num_kv_heads, max_smem, stream);
    case DType::kBf16:
      return Launch<DType::kBf16>(a, kv.num_kv_heads, max_smem, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace longctx::kernels::cuda
