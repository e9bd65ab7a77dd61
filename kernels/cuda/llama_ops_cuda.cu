#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/llama_ops_cuda.h"

namespace longctx::kernels::cuda {
namespace {

using internal::GridFor;
using internal::LoadF32;
using internal::WarpSum;

bool IsActivationType(DType t) { return t == DType::kF32 || t == DType::kBf16; }

__device__ __forceinline__ void StoreAs(DType t, void* base, int64_t i,
                                        float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(base)[i] = v;
      break;
    case DType::kF16:
      static_cast<__half*>(base)[i] = __float2half_rn(v);
      break;
    case DType::kBf16:
      static_cast<__nv_bfloat16*>(base)[i] = __float2bfloat16_rn(v);
      break;
  }
}

__device__ __forceinline__ float LoadAs(DType t, const void* base, int64_t i) {
  switch (t) {
    case DType::kF16:
      return LoadF32<DType::kF16>(base, i);
    case DType::kBf16:
      return LoadF32<DType::kBf16>(base, i);
    default:
      return LoadF32<DType::kF32>(base, i);
  }
}

__global__ void EmbedRowsKernel(const void* table, DType dtype, int64_t dim,
                                const int32_t* ids, int64_t n, float* out) {
  const int64_t total = n * dim;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
       idx < total; idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = idx / dim;
    const int64_t col = idx - row * dim;
    out[idx] = LoadAs(dtype, table, int64_t{ids[row]} * dim + col);
  }
}

constexpr int kNormThreads = 256;

__global__ void __launch_bounds__(kNormThreads)
    NormRowsKernel(float* residual, const float* delta,
                   const int32_t* row_index, int64_t dim, const float* weight,
                   float eps, bool update_residual, DType out_dtype, void* out,
                   int64_t out_stride) {
  __shared__ float partial[kNormThreads / 32];
  const int64_t r = blockIdx.x;
  const int64_t s = row_index != nullptr ? row_index[r] : r;
  float* x = residual + s * dim;
  const float* d = delta != nullptr ? delta + s * dim : nullptr;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    float v = x[i];
    if (d != nullptr) v += d[i];
    if (update_residual) x[i] = v;
    sum += v * v;
  }
  sum = WarpSum(sum);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    float v = threadIdx.x < kNormThreads / 32 ? partial[threadIdx.x] : 0.0f;
    v = WarpSum(v);
    if (threadIdx.x == 0) partial[0] = v;
  }
  __syncthreads();
  const float inv = rsqrtf(partial[0] / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    // The same thread wrote x[i] above: no barrier needed to read it back.
    float v = x[i];
    if (d != nullptr && !update_residual) v += d[i];
    StoreAs(out_dtype, out, r * out_stride + i, v * inv * weight[i]);
  }
}

__global__ void RopeTableKernel(const float* inv_freq, int half,
                                const int32_t* positions, int64_t n,
                                float2* table) {
  const int64_t total = n * half;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
       idx < total; idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t i = idx / half;
    const int j = static_cast<int>(idx - i * half);
    const double angle =
        static_cast<double>(positions[i]) * static_cast<double>(inv_freq[j]);
    double s, c;
    sincos(angle, &s, &c);
    table[idx] = make_float2(static_cast<float>(c), static_cast<float>(s));
  }
}

__global__ void QkvPostKernel(float* qkv, int heads, int kv_heads, int head_dim,
                              const float* bias, const float2* rope,
                              __half* q16, KvDest dest) {
  const int64_t t = blockIdx.x;
  const int half = head_dim / 2;
  const int64_t q_dim = int64_t{heads} * head_dim;
  const int64_t kv_dim = int64_t{kv_heads} * head_dim;
  const int64_t row_len = q_dim + 2 * kv_dim;
  float* row = qkv + t * row_len;
  const float2* cs = rope + t * half;
  const int32_t block = dest.block_id != nullptr ? dest.block_id[t] : -1;
  const size_t elem = dest.kv_dtype == DType::kF32 ? 4 : 2;
  const int64_t tensor_elems = int64_t{kv_heads} * dest.block_size * head_dim;
  char* k_base = nullptr;
  int64_t slot = 0;
  if (block >= 0) {
    k_base = static_cast<char*>(dest.pool) + block * dest.block_bytes +
             static_cast<int64_t>(dest.layer) * 2 * tensor_elems * elem;
    slot = dest.slot[t];
  }
  // Rotated pairs of q and k heads.
  const int64_t pairs = int64_t{heads + kv_heads} * half;
  for (int64_t idx = threadIdx.x; idx < pairs; idx += blockDim.x) {
    const int h = static_cast<int>(idx / half);
    const int i = static_cast<int>(idx - int64_t{h} * half);
    const int64_t base = int64_t{h} * head_dim;  // k heads follow q heads.
    float a = row[base + i];
    float b = row[base + i + half];
    if (bias != nullptr) {
      a += bias[base + i];
      b += bias[base + i + half];
    }
    const float c = cs[i].x, s = cs[i].y;
    const float ya = a * c - b * s;
    const float yb = b * c + a * s;
    if (h < heads) {
      row[base + i] = ya;
      row[base + i + half] = yb;
      if (q16 != nullptr) {
        q16[t * q_dim + base + i] = __float2half_rn(ya);
        q16[t * q_dim + base + i + half] = __float2half_rn(yb);
      }
    } else {
      row[base + i] = ya;
      row[base + i + half] = yb;
      if (k_base != nullptr) {
        const int kh = h - heads;
        const int64_t at = (int64_t{kh} * dest.block_size + slot) * head_dim;
        StoreAs(dest.kv_dtype, k_base, at + i, ya);
        StoreAs(dest.kv_dtype, k_base, at + i + half, yb);
      }
    }
  }
  // Values: bias, then into the cache.
  for (int64_t idx = threadIdx.x; idx < kv_dim; idx += blockDim.x) {
    const int64_t at_row = q_dim + kv_dim + idx;
    float v = row[at_row];
    if (bias != nullptr) {
      v += bias[at_row];
      row[at_row] = v;
    }
    if (k_base != nullptr) {
      const int kh = static_cast<int>(idx / head_dim);
      const int x = static_cast<int>(idx - int64_t{kh} * head_dim);
      const int64_t at = (int64_t{kh} * dest.block_size + slot) * head_dim + x;
      StoreAs(dest.kv_dtype, k_base + tensor_elems * elem, at, v);
    }
  }
}

__global__ void SwiGluRowsKernel(const float* gate_up, int64_t rows,
                                 int64_t dim, DType out_dtype, void* out) {
  const int64_t total = rows * dim;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
       idx < total; idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / dim;
    const int64_t i = idx - r * dim;
    const float g = gate_up[r * 2 * dim + i];
    const float u = gate_up[r * 2 * dim + dim + i];
    StoreAs(out_dtype, out, idx, g / (1.0f + expf(-g)) * u);
  }
}

__global__ void ConvertRowsKernel(const float* in, int64_t in_stride,
                                  int64_t rows, int64_t dim, DType out_dtype,
                                  void* out, int64_t out_stride) {
  const int64_t total = rows * dim;
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
       idx < total; idx += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = idx / dim;
    const int64_t i = idx - r * dim;
    StoreAs(out_dtype, out, r * out_stride + i, in[r * in_stride + i]);
  }
}

__global__ void ConvertTensorKernel(const void* src, DType src_dtype, int64_t n,
                                    void* dst, DType dst_dtype) {
  for (int64_t idx = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; idx < n;
       idx += int64_t{gridDim.x} * blockDim.x) {
    StoreAs(dst_dtype, dst, idx, LoadAs(src_dtype, src, idx));
  }
}

constexpr int kThreads = 256;

}  // namespace

cudaError_t EmbedRows(const void* table, DType dtype, int64_t dim,
                      const int32_t* ids, int64_t n, float* out,
                      cudaStream_t stream) {
  if (table == nullptr || ids == nullptr || out == nullptr || dim < 1 ||
      n < 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  EmbedRowsKernel<<<GridFor(n * dim, kThreads), kThreads, 0, stream>>>(
      table, dtype, dim, ids, n, out);
  return cudaGetLastError();
}

cudaError_t NormRows(float* residual, const float* delta,
                     const int32_t* row_index, int64_t rows, int64_t dim,
                     const float* weight, float eps, bool update_residual,
                     DType out_dtype, void* out, int64_t out_stride,
                     cudaStream_t stream) {
  if (residual == nullptr || weight == nullptr || out == nullptr || dim < 1 ||
      rows < 0 || out_stride < dim || !(eps > 0) ||
      !IsActivationType(out_dtype) || rows > 0x7fffffff) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  NormRowsKernel<<<static_cast<unsigned>(rows), kNormThreads, 0, stream>>>(
      residual, delta, row_index, dim, weight, eps, update_residual, out_dtype,
      out, out_stride);
  return cudaGetLastError();
}

cudaError_t RopeTable(const float* inv_freq, int half, const int32_t* positions,
                      int64_t n, float2* table, cudaStream_t stream) {
  if (inv_freq == nullptr || positions == nullptr || table == nullptr ||
      half < 1 || n < 0) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  RopeTableKernel<<<GridFor(n * half, kThreads), kThreads, 0, stream>>>(
      inv_freq, half, positions, n, table);
  return cudaGetLastError();
}

cudaError_t QkvPost(float* qkv, int64_t n, int heads, int kv_heads,
                    int head_dim, const float* bias, const float2* rope,
                    void* q16, const KvDest& dest, cudaStream_t stream) {
  if (qkv == nullptr || rope == nullptr || n < 0 || heads < 1 || kv_heads < 1 ||
      head_dim < 2 || head_dim % 2 != 0 || n > 0x7fffffff ||
      (dest.block_id != nullptr &&
       (dest.pool == nullptr || dest.slot == nullptr || dest.block_size < 1 ||
        (dest.kv_dtype != DType::kF16 && dest.kv_dtype != DType::kF32)))) {
    return cudaErrorInvalidValue;
  }
  if (n == 0) return cudaSuccess;
  QkvPostKernel<<<static_cast<unsigned>(n), 128, 0, stream>>>(
      qkv, heads, kv_heads, head_dim, bias, rope, static_cast<__half*>(q16),
      dest);
  return cudaGetLastError();
}

cudaError_t SwiGluRows(const float* gate_up, int64_t rows, int64_t dim,
                       DType out_dtype, void* out, cudaStream_t stream) {
  if (gate_up == nullptr || out == nullptr || rows < 0 || dim < 1 ||
      !IsActivationType(out_dtype)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  SwiGluRowsKernel<<<GridFor(rows * dim, kThreads), kThreads, 0, stream>>>(
      gate_up, rows, dim, out_dtype, out);
  return cudaGetLastError();
}

cudaError_t ConvertRows(const float* in, int64_t in_stride, int64_t rows,
                        int64_t dim, DType out_dtype, void* out,
                        int64_t out_stride, cudaStream_t stream) {
  if (in == nullptr || out == nullptr || rows < 0 || dim < 1 ||
      in_stride < dim || out_stride < dim || !IsActivationType(out_dtype)) {
    return cudaErrorInvalidValue;
  }
  if (rows == 0) return cudaSuccess;
  ConvertRowsKernel<<<GridFor(rows * dim, kThreads), kThreads, 0, stream>>>(
      in, in_stride, rows, dim, out_dtype, out, out_stride);
  return cudaGetLastError();
}

cudaError_t ConvertTensor(const void* src, DType src_dtype, int64_t n,
                          void* dst, DType dst_dtype, cudaStream_t stream) {
  if (src == nullptr || dst == nullptr || n < 0) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  ConvertTensorKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(
      src, src_dtype, n, dst, dst_dtype);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
