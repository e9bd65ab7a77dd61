#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>
#include <cstdint>

#include "kernels/cuda/cuda_util.cuh"
#include "kernels/cuda/paged_attention_cuda.h"

namespace longctx::kernels::cuda {
namespace {

using internal::LoadF32;
using internal::WarpMax;
using internal::WarpSum;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ void StoreOut(DType t, void* out, int64_t i,
                                         float v) {
  if (t == DType::kBf16) {
    static_cast<__nv_bfloat16*>(out)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(out)[i] = v;
  }
}

// Address of key `j`'s row of kv head `kvh` (K; V is tensor_bytes further).
__device__ __forceinline__ const char* KeyRow(const PagedPool& p,
                                              const int32_t* table, int64_t j,
                                              int kvh, int64_t tensor_bytes,
                                              int elem) {
  const int32_t block = table[j / p.block_size];
  const int64_t slot = j % p.block_size;
  return static_cast<const char*>(p.pool) + block * p.block_bytes +
         int64_t{p.layer} * 2 * tensor_bytes +
         (int64_t{kvh} * p.block_size + slot) * p.head_dim * elem;
}

// --- Prefill: tensor cores ---------------------------------------------------

constexpr int kPrefillThreads = 128;  // Four warps of 16 query rows each.
constexpr int kKeysPerTile = 64;

__device__ __forceinline__ void Mma16816(float (&d)[4], const uint32_t (&a)[4],
                                         uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
      "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackHalf2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&h);
}

__device__ __forceinline__ uint32_t PackRaw(unsigned short lo,
                                            unsigned short hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}

struct PrefillArgs {
  const unsigned short* q16;
  int64_t q_stride;
  const PrefillSeq* seqs;
  const PrefillTile* tiles;
  const int32_t* block_tables;
  PagedPool pool;
  int group;  // Query heads per kv head.
  float scale_log2;
  DType out_dtype;
  void* out;
  int64_t out_stride;
};

// Copies 16 bytes global -> shared without passing through registers;
// src_bytes 0 fills the 16 bytes with zeros (src must still be valid).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem,
                                          int src_bytes) {
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
               "l"(gmem), "r"(src_bytes));
}
__device__ __forceinline__ void CpAsyncCommit() {
  asm volatile("cp.async.commit_group;\n" ::);
}
template <int N>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Four 8x8 fp16 matrices from shared memory, transposed: thread t gets, of
// matrix i, the elements at (rows 2 (t % 4) and 2 (t % 4) + 1, column t / 4)
// of the rows that threads 8i .. 8i + 7 point at.
__device__ __forceinline__ void LdMatrixX4Trans(uint32_t (&r)[4],
                                                const void* row) {
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile(
      "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
      : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
      : "r"(addr));
}

template <int HD>
constexpr size_t PrefillSmemBytes() {
  // Two stages of a K tile and a V tile, rows padded by 8 halves.
  return size_t{2} * 2 * kKeysPerTile * (HD + 8) * sizeof(unsigned short);
}

// Each thread block: 64 query rows of one sequence, one query head; four
// warps of 16 rows. Key tiles of 64 are fetched with cp.async into one of
// two shared-memory stages while the other is computed on; S = Q K^T and
// O += P V run on tensor cores (m16n8k16, fp16 in, fp32 accumulate), V's
// fragments loaded transposed by ldmatrix; the softmax is online, in
// registers; tiles wholly before the first row's position skip the mask.
template <int HD>
__global__ void __launch_bounds__(kPrefillThreads)
    PrefillKernel(const PrefillArgs a) {
  constexpr int kStride = HD + 8;  // Halves per smem row (16-byte multiple).
  constexpr int kTileHalves = kKeysPerTile * kStride;
  extern __shared__ __align__(16) unsigned short prefill_smem[];
  // Stage s: K at s * 2 * kTileHalves, V right after it.

  // Heads vary fastest, so the query heads of one kv head run together
  // (their K and V tiles are read once from memory, then from L2); tiles
  // run last first, so the long ones (more keys) are not left for the end.
  const PrefillTile tile = a.tiles[gridDim.y - 1 - blockIdx.y];
  const PrefillSeq seq = a.seqs[tile.seq];
  const int h = blockIdx.x;
  const int kvh = h / a.group;
  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;  // Row within the fragment (and key within 8).
  const int t = lane % 4;  // Column pair within the fragment.
  const int32_t* table = a.block_tables + seq.table_offset;
  const int64_t tensor_bytes =
      int64_t{a.pool.num_kv_heads} * a.pool.block_size * HD * 2;

  const int warp_row = tile.row0 + warp * 16;
  const int r0 = warp_row + g;
  const int r1 = r0 + 8;
  const int64_t pos0 = int64_t{seq.q_pos} + r0;
  const int64_t pos1 = int64_t{seq.q_pos} + r1;

  // Keys the tile's last row sees; later keys are in every row's future.
  const int last_row = min(tile.row0 + kPrefillTileRows, seq.n_q) - 1;
  const int64_t kv_end =
      min(int64_t{seq.kv_len}, int64_t{seq.q_pos} + last_row + 1);
  const int num_tiles =
      static_cast<int>((kv_end + kKeysPerTile - 1) / kKeysPerTile);
  // Tiles before this one need no mask: every row sees all their keys.
  const int64_t first_pos = int64_t{seq.q_pos} + tile.row0;

  // Starts the copy of key tile `kt` into stage `stage`.
  auto load_tile = [&](int kt, int stage) {
    unsigned short* k_dst = prefill_smem + stage * 2 * kTileHalves;
    unsigned short* v_dst = k_dst + kTileHalves;
    constexpr int kChunks = HD / 8;
    const int64_t j0 = int64_t{kt} * kKeysPerTile;
    for (int idx = tid; idx < kKeysPerTile * kChunks; idx += kPrefillThreads) {
      const int row = idx / kChunks;
      const int chunk = idx - row * kChunks;
      const int64_t j = j0 + row;
      const bool in = j < kv_end;
      const char* k_row = in ? KeyRow(a.pool, table, j, kvh, tensor_bytes, 2)
                             : static_cast<const char*>(a.pool.pool);
      CpAsync16(&k_dst[row * kStride + chunk * 8], k_row + chunk * 16,
                in ? 16 : 0);
      CpAsync16(&v_dst[row * kStride + chunk * 8],
                k_row + (in ? tensor_bytes : 0) + chunk * 16, in ? 16 : 0);
    }
    CpAsyncCommit();
  };
  if (num_tiles > 0) load_tile(0, 0);

  // Q fragments for the warp's 16 rows, all of head_dim, kept in registers.
  uint32_t qa[HD / 16][4];
  {
    const unsigned short* q_r0 =
        a.q16 + (int64_t{seq.q_row} + r0) * a.q_stride + int64_t{h} * HD;
    const unsigned short* q_r1 =
        a.q16 + (int64_t{seq.q_row} + r1) * a.q_stride + int64_t{h} * HD;
    const bool ok0 = r0 < seq.n_q, ok1 = r1 < seq.n_q;
#pragma unroll
    for (int kk = 0; kk < HD / 16; ++kk) {
      const int c = kk * 16 + 2 * t;
      qa[kk][0] = ok0 ? *reinterpret_cast<const uint32_t*>(q_r0 + c) : 0u;
      qa[kk][1] = ok1 ? *reinterpret_cast<const uint32_t*>(q_r1 + c) : 0u;
      qa[kk][2] = ok0 ? *reinterpret_cast<const uint32_t*>(q_r0 + c + 8) : 0u;
      qa[kk][3] = ok1 ? *reinterpret_cast<const uint32_t*>(q_r1 + c + 8) : 0u;
    }
  }

  float o[HD / 8][4];
#pragma unroll
  for (int i = 0; i < HD / 8; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY;  // Running maxima (log2 units).
  float l0 = 0.f, l1 = 0.f;              // This thread's share of the sums.

  for (int kt = 0; kt < num_tiles; ++kt) {
    const int stage = kt % 2;
    if (kt + 1 < num_tiles) {
      load_tile(kt + 1, stage ^ 1);
      CpAsyncWait<1>();  // Tile kt has landed; kt + 1 may still travel.
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();
    const unsigned short* k_tile = prefill_smem + stage * 2 * kTileHalves;
    const unsigned short* v_tile = k_tile + kTileHalves;
    const int64_t j0 = int64_t{kt} * kKeysPerTile;

    // S = Q K^T for 16 rows x 64 keys: 8 fragments of 8 keys.
    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
      const unsigned short* k_row = &k_tile[(nt * 8 + g) * kStride];
#pragma unroll
      for (int kk = 0; kk < HD / 16; ++kk) {
        const uint32_t b0 =
            *reinterpret_cast<const uint32_t*>(k_row + kk * 16 + 2 * t);
        const uint32_t b1 =
            *reinterpret_cast<const uint32_t*>(k_row + kk * 16 + 2 * t + 8);
        Mma16816(s[nt], qa[kk], b0, b1);
      }
    }
    // Scale to log2 units and mask (only where some key is hidden from
    // some row of this block); the rows' new maxima.
    const bool full =
        j0 + kKeysPerTile - 1 <= first_pos && j0 + kKeysPerTile <= seq.kv_len;
    float tile_m0 = -INFINITY, tile_m1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        if (full) {
          s[nt][e] *= a.scale_log2;
          s[nt][2 + e] *= a.scale_log2;
        } else {
          const int64_t j = j0 + nt * 8 + 2 * t + e;
          const bool in_range = j < seq.kv_len;
          s[nt][e] =
              (in_range && j <= pos0) ? s[nt][e] * a.scale_log2 : -INFINITY;
          s[nt][2 + e] =
              (in_range && j <= pos1) ? s[nt][2 + e] * a.scale_log2 : -INFINITY;
        }
        tile_m0 = fmaxf(tile_m0, s[nt][e]);
        tile_m1 = fmaxf(tile_m1, s[nt][2 + e]);
      }
    }
#pragma unroll
    for (int off = 1; off <= 2; off *= 2) {
      tile_m0 = fmaxf(tile_m0, __shfl_xor_sync(0xffffffffu, tile_m0, off));
      tile_m1 = fmaxf(tile_m1, __shfl_xor_sync(0xffffffffu, tile_m1, off));
    }
    const float new_m0 = fmaxf(m0, tile_m0), new_m1 = fmaxf(m1, tile_m1);
    // A row that has seen no key yet keeps everything at zero.
    const float base0 = new_m0 == -INFINITY ? 0.f : new_m0;
    const float base1 = new_m1 == -INFINITY ? 0.f : new_m1;
    const float alpha0 = exp2f(m0 - base0), alpha1 = exp2f(m1 - base1);
    m0 = new_m0;
    m1 = new_m1;
    l0 *= alpha0;
    l1 *= alpha1;
#pragma unroll
    for (int i = 0; i < HD / 8; ++i) {
      o[i][0] *= alpha0;
      o[i][1] *= alpha0;
      o[i][2] *= alpha1;
      o[i][3] *= alpha1;
    }
    // P = exp2(S - m), as fp16 A fragments of 16 keys each.
    uint32_t pa[4][4];
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
      const float p0 = exp2f(s[nt][0] - base0), p1 = exp2f(s[nt][1] - base0);
      const float p2 = exp2f(s[nt][2] - base1), p3 = exp2f(s[nt][3] - base1);
      l0 += p0 + p1;
      l1 += p2 + p3;
      const int kk = nt / 2, hi = nt % 2;
      pa[kk][hi * 2 + 0] = PackHalf2(p0, p1);  // Row g.
      pa[kk][hi * 2 + 1] = PackHalf2(p2, p3);  // Row g + 8.
    }
    // O += P V. ldmatrix.trans gives, for 16 keys and two 8-column tiles,
    // the B fragments of both: matrix i holds keys (i % 2) * 8 .. + 7 and
    // columns (dt + i / 2) * 8 .. + 7.
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      const int key = kk * 16 + ((lane / 8) % 2) * 8 + lane % 8;
#pragma unroll
      for (int dt = 0; dt < HD / 8; dt += 2) {
        uint32_t b[4];
        LdMatrixX4Trans(b, &v_tile[key * kStride + (dt + lane / 16) * 8]);
        Mma16816(o[dt], pa[kk], b[0], b[1]);
        Mma16816(o[dt + 1], pa[kk], b[2], b[3]);
      }
    }
    __syncthreads();  // Before the next iteration's copy into this stage.
  }

  // The rows' sums over the quad, then O / l.
#pragma unroll
  for (int off = 1; off <= 2; off *= 2) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, off);
    l1 += __shfl_xor_sync(0xffffffffu, l1, off);
  }
  const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f;
  const float inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
  const int64_t out0 =
      (int64_t{seq.q_row} + r0) * a.out_stride + int64_t{h} * HD;
  const int64_t out1 =
      (int64_t{seq.q_row} + r1) * a.out_stride + int64_t{h} * HD;
#pragma unroll
  for (int dt = 0; dt < HD / 8; ++dt) {
    const int c = dt * 8 + 2 * t;
    if (r0 < seq.n_q) {
      StoreOut(a.out_dtype, a.out, out0 + c, o[dt][0] * inv0);
      StoreOut(a.out_dtype, a.out, out0 + c + 1, o[dt][1] * inv0);
    }
    if (r1 < seq.n_q) {
      StoreOut(a.out_dtype, a.out, out1 + c, o[dt][2] * inv1);
      StoreOut(a.out_dtype, a.out, out1 + c + 1, o[dt][3] * inv1);
    }
  }
}

// --- Decode: split-KV on CUDA cores ------------------------------------------

constexpr int kDecodeThreads = 128;
constexpr int kDecodeKeys = 128;  // Keys per tile: one per thread.
constexpr int kMaxGroup = 64;
constexpr int kMaxHeadDim = 256;

struct DecodeArgs {
  const float* q;
  int64_t q_stride;
  const int32_t* q_row;
  const int32_t* kv_len;
  const int32_t* table_offset;
  const int32_t* block_tables;
  PagedPool pool;
  int heads;
  int group;
  float scale_log2;
  int max_splits;
  float* part_o;    // [entry][head][split][head_dim]
  float* part_lse;  // [entry][head][split], natural log.
};

// Dynamic shared memory: q [G][d], scores [G][kDecodeKeys], acc [G][d],
// m, l, alpha [G], and kDecodeKeys V row pointers.
size_t DecodeSmemBytes(int group, int d) {
  return sizeof(float) * (2 * size_t(group) * d + size_t(group) * kDecodeKeys +
                          3 * size_t(group)) +
         sizeof(const char*) * kDecodeKeys;
}

template <DType KV>
__global__ void __launch_bounds__(kDecodeThreads)
    DecodeSplitKernel(const DecodeArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int G = a.group;
  const int d = a.pool.head_dim;
  const char** v_rows = reinterpret_cast<const char**>(smem_raw);
  float* q = reinterpret_cast<float*>(smem_raw + sizeof(char*) * kDecodeKeys);
  float* scores = q + G * d;
  float* acc = scores + G * kDecodeKeys;
  float* m = acc + G * d;
  float* l = m + G;
  float* alpha = l + G;

  const int e = blockIdx.x;
  const int kvh = blockIdx.y;
  const int split = blockIdx.z;
  const int tid = threadIdx.x;
  const int64_t len = a.kv_len[e];
  // Splits of whole tiles; short sequences use fewer of them.
  const int64_t tiles = (len + kDecodeKeys - 1) / kDecodeKeys;
  const int64_t splits = min(int64_t{a.max_splits}, tiles);
  const int64_t per = splits > 0 ? (tiles + splits - 1) / splits : 0;
  const int64_t k0 = split * per * kDecodeKeys;
  const int64_t k1 = min(len, (split + 1) * per * kDecodeKeys);
  const int64_t part = (int64_t{e} * a.heads + int64_t{kvh} * G) * a.max_splits;
  if (k0 >= k1) {
    for (int gi = tid; gi < G; gi += blockDim.x) {
      a.part_lse[part + int64_t{gi} * a.max_splits + split] = -INFINITY;
    }
    return;  // The merge ignores this split's o.
  }
  const int elem = KV == DType::kF32 ? 4 : 2;
  const int64_t tensor_bytes =
      int64_t{a.pool.num_kv_heads} * a.pool.block_size * d * elem;
  const int32_t* table = a.block_tables + a.table_offset[e];
  const float* q_src =
      a.q + int64_t{a.q_row[e]} * a.q_stride + int64_t{kvh} * G * d;
  for (int i = tid; i < G * d; i += blockDim.x) {
    q[i] = q_src[i] * a.scale_log2;
    acc[i] = 0.f;
  }
  for (int gi = tid; gi < G; gi += blockDim.x) {
    m[gi] = -INFINITY;
    l[gi] = 0.f;
  }
  __syncthreads();
  const int warp = tid / 32, lane = tid % 32;
  for (int64_t j0 = k0; j0 < k1; j0 += kDecodeKeys) {
    const int keys = static_cast<int>(min(int64_t{kDecodeKeys}, k1 - j0));
    // Scores: one key per thread.
    if (tid < keys) {
      const char* k_row =
          KeyRow(a.pool, table, j0 + tid, kvh, tensor_bytes, elem);
      v_rows[tid] = k_row + tensor_bytes;
      for (int gi = 0; gi < G; ++gi) {
        const float* qg = q + gi * d;
        float dot = 0.f;
        for (int x = 0; x < d; ++x) dot += qg[x] * LoadF32<KV>(k_row, x);
        scores[gi * kDecodeKeys + tid] = dot;
      }
    } else {
      for (int gi = 0; gi < G; ++gi) scores[gi * kDecodeKeys + tid] = -INFINITY;
    }
    __syncthreads();
    // Softmax update, one warp per head.
    for (int gi = warp; gi < G; gi += kDecodeThreads / 32) {
      float* sg = scores + gi * kDecodeKeys;
      float tm = -INFINITY;
      for (int k = lane; k < kDecodeKeys; k += 32) tm = fmaxf(tm, sg[k]);
      tm = WarpMax(tm);
      const float new_m = fmaxf(m[gi], tm);  // Finite: keys >= 1.
      float sum = 0.f;
      for (int k = lane; k < kDecodeKeys; k += 32) {
        const float p = exp2f(sg[k] - new_m);
        sg[k] = p;
        sum += p;
      }
      sum = WarpSum(sum);
      if (lane == 0) {
        const float al = exp2f(m[gi] - new_m);
        alpha[gi] = al;
        l[gi] = l[gi] * al + sum;
        m[gi] = new_m;
      }
    }
    __syncthreads();
    // acc = alpha * acc + P V; each thread owns columns x = tid, tid + 128.
    for (int x = tid; x < d; x += blockDim.x) {
      for (int gi = 0; gi < G; ++gi) acc[gi * d + x] *= alpha[gi];
      for (int k = 0; k < keys; ++k) {
        const float v = LoadF32<KV>(v_rows[k], x);
        for (int gi = 0; gi < G; ++gi) {
          acc[gi * d + x] += scores[gi * kDecodeKeys + k] * v;
        }
      }
    }
    __syncthreads();
  }
  for (int i = tid; i < G * d; i += blockDim.x) {
    const int gi = i / d;
    const int x = i - gi * d;
    a.part_o[(part + int64_t{gi} * a.max_splits + split) * d + x] =
        acc[i] / l[gi];
  }
  for (int gi = tid; gi < G; gi += blockDim.x) {
    a.part_lse[part + int64_t{gi} * a.max_splits + split] =
        (m[gi] + log2f(l[gi])) * kLn2;
  }
}

// The fp16 decode kernel: each key tile's K and V come into shared memory
// with 16-byte loads that are coalesced along the block's contiguous rows;
// scores are then (query head, key) pairs, and the output (query head,
// column pair) pairs, both read from shared memory without bank conflicts
// (K rows padded to an odd number of words). head_dim a multiple of 8.
constexpr int kTileKeys = 64;

size_t TiledSmemBytes(int group, int d) {
  return sizeof(float) * (2 * size_t(group) * d + size_t(group) * kTileKeys +
                          3 * size_t(group)) +
         sizeof(unsigned short) * kTileKeys * (2 * size_t(d) + 2);
}

__global__ void __launch_bounds__(kDecodeThreads)
    DecodeTiledKernel(const DecodeArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int G = a.group;
  const int d = a.pool.head_dim;
  const int k_stride = d + 2;  // Halves: an odd number of 32-bit words.
  unsigned short* v_tile = reinterpret_cast<unsigned short*>(smem_raw);
  unsigned short* k_tile = v_tile + kTileKeys * d;
  float* q = reinterpret_cast<float*>(k_tile + kTileKeys * k_stride);
  float* scores = q + G * d;
  float* acc = scores + G * kTileKeys;
  float* m = acc + G * d;
  float* l = m + G;
  float* alpha = l + G;

  const int e = blockIdx.x;
  const int kvh = blockIdx.y;
  const int split = blockIdx.z;
  const int tid = threadIdx.x;
  const int64_t len = a.kv_len[e];
  const int64_t tiles = (len + kTileKeys - 1) / kTileKeys;
  const int64_t splits = min(int64_t{a.max_splits}, tiles);
  const int64_t per = splits > 0 ? (tiles + splits - 1) / splits : 0;
  const int64_t k0 = split * per * kTileKeys;
  const int64_t k1 = min(len, (split + 1) * per * kTileKeys);
  const int64_t part = (int64_t{e} * a.heads + int64_t{kvh} * G) * a.max_splits;
  if (k0 >= k1) {
    for (int gi = tid; gi < G; gi += blockDim.x) {
      a.part_lse[part + int64_t{gi} * a.max_splits + split] = -INFINITY;
    }
    return;
  }
  const int64_t tensor_bytes =
      int64_t{a.pool.num_kv_heads} * a.pool.block_size * d * 2;
  const int32_t* table = a.block_tables + a.table_offset[e];
  const float* q_src =
      a.q + int64_t{a.q_row[e]} * a.q_stride + int64_t{kvh} * G * d;
  for (int i = tid; i < G * d; i += blockDim.x) {
    q[i] = q_src[i] * a.scale_log2;
    acc[i] = 0.f;
  }
  for (int gi = tid; gi < G; gi += blockDim.x) {
    m[gi] = -INFINITY;
    l[gi] = 0.f;
  }
  const int chunks = d / 8;  // 16-byte pieces of a row.
  const int half_d = d / 2;
  const int warp = tid / 32, lane = tid % 32;
  for (int64_t j0 = k0; j0 < k1; j0 += kTileKeys) {
    const int keys = static_cast<int>(min(int64_t{kTileKeys}, k1 - j0));
    for (int idx = tid; idx < keys * chunks; idx += blockDim.x) {
      const int row = idx / chunks;
      const int c = idx - row * chunks;
      const char* k_row = KeyRow(a.pool, table, j0 + row, kvh, tensor_bytes, 2);
      const uint4 kv = reinterpret_cast<const uint4*>(k_row)[c];
      const uint4 vv = reinterpret_cast<const uint4*>(k_row + tensor_bytes)[c];
      uint32_t* k_dst =
          reinterpret_cast<uint32_t*>(k_tile + row * k_stride + c * 8);
      k_dst[0] = kv.x;
      k_dst[1] = kv.y;
      k_dst[2] = kv.z;
      k_dst[3] = kv.w;
      *reinterpret_cast<uint4*>(v_tile + row * d + c * 8) = vv;
    }
    __syncthreads();
    for (int p = tid; p < G * kTileKeys; p += blockDim.x) {
      const int gi = p / kTileKeys;
      const int k = p - gi * kTileKeys;
      float dot = -INFINITY;
      if (k < keys) {
        const float2* qg = reinterpret_cast<const float2*>(q + gi * d);
        const __half2* kr =
            reinterpret_cast<const __half2*>(k_tile + k * k_stride);
        dot = 0.f;
        for (int i = 0; i < half_d; ++i) {
          const float2 kf = __half22float2(kr[i]);
          const float2 qf = qg[i];
          dot = fmaf(qf.x, kf.x, fmaf(qf.y, kf.y, dot));
        }
      }
      scores[p] = dot;
    }
    __syncthreads();
    for (int gi = warp; gi < G; gi += kDecodeThreads / 32) {
      float* sg = scores + gi * kTileKeys;
      const float s0 = sg[lane], s1 = sg[lane + 32];
      const float new_m = fmaxf(m[gi], WarpMax(fmaxf(s0, s1)));  // Finite.
      const float p0 = exp2f(s0 - new_m), p1 = exp2f(s1 - new_m);
      sg[lane] = p0;
      sg[lane + 32] = p1;
      const float sum = WarpSum(p0 + p1);
      if (lane == 0) {
        const float al = exp2f(m[gi] - new_m);
        alpha[gi] = al;
        l[gi] = l[gi] * al + sum;
        m[gi] = new_m;
      }
    }
    __syncthreads();
    for (int o = tid; o < G * half_d; o += blockDim.x) {
      const int gi = o / half_d;
      const int c2 = o - gi * half_d;
      float2* out = reinterpret_cast<float2*>(acc + gi * d) + c2;
      float2 sum = *out;
      const float al = alpha[gi];
      sum.x *= al;
      sum.y *= al;
      const float* pg = scores + gi * kTileKeys;
      const __half2* vc = reinterpret_cast<const __half2*>(v_tile) + c2;
      for (int k = 0; k < keys; ++k) {
        const float2 vf = __half22float2(vc[k * half_d]);
        const float pk = pg[k];
        sum.x = fmaf(pk, vf.x, sum.x);
        sum.y = fmaf(pk, vf.y, sum.y);
      }
      *out = sum;
    }
    __syncthreads();
  }
  for (int i = tid; i < G * d; i += blockDim.x) {
    const int gi = i / d;
    const int x = i - gi * d;
    a.part_o[(part + int64_t{gi} * a.max_splits + split) * d + x] =
        acc[i] / l[gi];
  }
  for (int gi = tid; gi < G; gi += blockDim.x) {
    a.part_lse[part + int64_t{gi} * a.max_splits + split] =
        (m[gi] + log2f(l[gi])) * kLn2;
  }
}

__global__ void DecodeMergeKernel(const float* part_o, const float* part_lse,
                                  const int32_t* q_row, int heads, int d,
                                  int max_splits, DType out_dtype, void* out,
                                  int64_t out_stride) {
  const int e = blockIdx.x;
  const int h = blockIdx.y;
  const int64_t part = (int64_t{e} * heads + h) * max_splits;
  float mx = -INFINITY;
  for (int s = 0; s < max_splits; ++s) mx = fmaxf(mx, part_lse[part + s]);
  const int64_t at = int64_t{q_row[e]} * out_stride + int64_t{h} * d;
  for (int x = threadIdx.x; x < d; x += blockDim.x) {
    float num = 0.f, den = 0.f;
    if (mx != -INFINITY) {
      for (int s = 0; s < max_splits; ++s) {
        const float lse = part_lse[part + s];
        if (lse == -INFINITY) continue;
        const float w = expf(lse - mx);
        num += w * part_o[(part + s) * d + x];
        den += w;
      }
    }
    StoreOut(out_dtype, out, at + x, den > 0.f ? num / den : 0.f);
  }
}

}  // namespace

bool PrefillAttentionSupported(int head_dim, DType kv_dtype) {
  return kv_dtype == DType::kF16 && (head_dim == 64 || head_dim == 128);
}

cudaError_t PrefillAttention(const void* q16, int64_t q_stride,
                             const PrefillSeq* seqs, const PrefillTile* tiles,
                             int num_tiles, const int32_t* block_tables,
                             const PagedPool& pool, int heads, float scale,
                             DType out_dtype, void* out, int64_t out_stride,
                             cudaStream_t stream) {
  const int d = pool.head_dim;
  if (!PrefillAttentionSupported(d, pool.dtype) || q16 == nullptr ||
      seqs == nullptr || tiles == nullptr || block_tables == nullptr ||
      pool.pool == nullptr || out == nullptr || num_tiles < 0 ||
      pool.num_kv_heads < 1 || heads < 1 || heads % pool.num_kv_heads != 0 ||
      pool.block_size < 1 || q_stride < int64_t{heads} * d ||
      out_stride < int64_t{heads} * d ||
      (out_dtype != DType::kF32 && out_dtype != DType::kBf16) ||
      q_stride % 2 != 0 || num_tiles > 65535) {
    return cudaErrorInvalidValue;
  }
  if (num_tiles == 0) return cudaSuccess;
  PrefillArgs a;
  a.q16 = static_cast<const unsigned short*>(q16);
  a.q_stride = q_stride;
  a.seqs = seqs;
  a.tiles = tiles;
  a.block_tables = block_tables;
  a.pool = pool;
  a.group = heads / pool.num_kv_heads;
  a.scale_log2 = (scale != 0.f ? scale : 1.f / sqrtf(float(d))) * kLog2e;
  a.out_dtype = out_dtype;
  a.out = out;
  a.out_stride = out_stride;
  const dim3 grid(static_cast<unsigned>(heads),
                  static_cast<unsigned>(num_tiles));
  // head_dim 128 takes 68 KiB of shared memory: more than the default 48.
  // The attribute is no stream operation (fine while a graph is captured).
  if (d == 64) {
    constexpr size_t smem = PrefillSmemBytes<64>();
    PrefillKernel<64><<<grid, kPrefillThreads, smem, stream>>>(a);
  } else {
    constexpr size_t smem = PrefillSmemBytes<128>();
    const cudaError_t e = cudaFuncSetAttribute(
        PrefillKernel<128>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(smem));
    if (e != cudaSuccess) return e;
    PrefillKernel<128><<<grid, kPrefillThreads, smem, stream>>>(a);
  }
  return cudaGetLastError();
}

int64_t DecodeWorkspaceFloats(int num_entries, int heads, int head_dim,
                              int max_splits) {
  return int64_t{num_entries} * heads * max_splits * (head_dim + 1);
}

cudaError_t DecodeAttention(const float* q, int64_t q_stride,
                            const int32_t* q_row, const int32_t* kv_len,
                            const int32_t* table_offset, int num_entries,
                            const int32_t* block_tables, const PagedPool& pool,
                            int heads, float scale, int max_splits,
                            float* workspace, DType out_dtype, void* out,
                            int64_t out_stride, cudaStream_t stream) {
  const int d = pool.head_dim;
  if (q == nullptr || q_row == nullptr || kv_len == nullptr ||
      table_offset == nullptr || block_tables == nullptr ||
      pool.pool == nullptr || workspace == nullptr || out == nullptr ||
      num_entries < 0 || d < 1 || d > kMaxHeadDim || pool.num_kv_heads < 1 ||
      heads < 1 || heads % pool.num_kv_heads != 0 ||
      heads / pool.num_kv_heads > kMaxGroup || max_splits < 1 ||
      max_splits > 64 || pool.block_size < 1 || q_stride < int64_t{heads} * d ||
      out_stride < int64_t{heads} * d ||
      (pool.dtype != DType::kF16 && pool.dtype != DType::kF32) ||
      (out_dtype != DType::kF32 && out_dtype != DType::kBf16)) {
    return cudaErrorInvalidValue;
  }
  if (num_entries == 0) return cudaSuccess;
  DecodeArgs a;
  a.q = q;
  a.q_stride = q_stride;
  a.q_row = q_row;
  a.kv_len = kv_len;
  a.table_offset = table_offset;
  a.block_tables = block_tables;
  a.pool = pool;
  a.heads = heads;
  a.group = heads / pool.num_kv_heads;
  a.scale_log2 = (scale != 0.f ? scale : 1.f / sqrtf(float(d))) * kLog2e;
  a.max_splits = max_splits;
  a.part_o = workspace;
  a.part_lse = workspace + int64_t{num_entries} * heads * max_splits * d;
  // fp16 rows of whole 16-byte pieces take the tiled kernel.
  const bool tiled = pool.dtype == DType::kF16 && d % 8 == 0;
  const size_t smem =
      tiled ? TiledSmemBytes(a.group, d) : DecodeSmemBytes(a.group, d);
  const dim3 grid(static_cast<unsigned>(num_entries),
                  static_cast<unsigned>(pool.num_kv_heads),
                  static_cast<unsigned>(max_splits));
  // More than the default 48 KiB of shared memory only for very wide groups
  // (64 heads per kv head at head_dim 256 need 160 KiB). Setting the
  // attribute is no stream operation, so it is allowed while a graph is
  // captured.
  auto kernel = tiled                       ? DecodeTiledKernel
                : pool.dtype == DType::kF16 ? DecodeSplitKernel<DType::kF16>
                                            : DecodeSplitKernel<DType::kF32>;
  cudaError_t e;
  if (smem > 48 * 1024) {
    e = cudaFuncSetAttribute(kernel,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem));
    if (e != cudaSuccess) return e;
  }
  kernel<<<grid, kDecodeThreads, smem, stream>>>(a);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  DecodeMergeKernel<<<dim3(static_cast<unsigned>(num_entries),
                           static_cast<unsigned>(heads)),
                      min(d, 256), 0, stream>>>(a.part_o, a.part_lse, q_row,
                                                heads, d, max_splits, out_dtype,
                                                out, out_stride);
  return cudaGetLastError();
}

}  // namespace longctx::kernels::cuda
