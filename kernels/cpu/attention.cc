#include "kernels/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/cpu/avx512_util.h"
#include "kernels/cpu_isa.h"
#include "kernels/dtype.h"

namespace longctx::kernels {
namespace {

constexpr int kMaxHeadDim = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Problem is a validated FlashAttention call.
struct Problem {
  const float* q;
  int64_t n_q;
  int64_t q_stride;
  const PagedKv* kv;
  int num_heads;
  int group;  // Query heads per kv head (G).
  int head_dim;
  // Position of query 0 relative to key 0: query i sees keys
  // j <= q_offset + i when causal.
  int64_t q_offset;
  bool causal;
  float scale;
  // Products in bf16 on the tile path (AttentionParams::compute, when the
  // CPU has AVX512_BF16).
  bool bf16;
  float* o;
  int64_t o_stride;
  float* lse;
};

// VisibleKeys returns how many leading keys query i sees.
int64_t VisibleKeys(const Problem& p, int64_t i) {
  const int64_t n_kv = p.kv->num_tokens;
  if (!p.causal) return n_kv;
  return std::clamp<int64_t>(p.q_offset + i + 1, 0, n_kv);
}

// KvRows returns the address of token t of kv head h and how many tokens from
// t on are contiguous (the rest of its block).
const uint8_t* KvRows(const void* const* blocks, const PagedKv& kv, int64_t t,
                      int h, int64_t* contiguous) {
  const int64_t block = t / kv.block_size;
  const int64_t slot = t % kv.block_size;
  *contiguous = kv.block_size - slot;
  return static_cast<const uint8_t*>(blocks[block]) +
         (static_cast<size_t>(h) * kv.block_size + slot) * kv.head_dim *
             DTypeSize(kv.dtype);
}

// LoadKvTile converts tokens [t0, t0 + count) of kv head h to fp32 rows of
// `row_stride` floats (>= head_dim; the padding is zero-filled).
void LoadKvTile(const void* const* blocks, const PagedKv& kv, int h, int64_t t0,
                int64_t count, int row_stride, float* out) {
  const int d = kv.head_dim;
  int64_t t = t0;
  while (t < t0 + count) {
    int64_t run;
    const uint8_t* src = KvRows(blocks, kv, t, h, &run);
    run = std::min(run, t0 + count - t);
    float* dst = out + (t - t0) * row_stride;
    if (row_stride == d) {
      ConvertToF32(kv.dtype, src, dst, run * d);
    } else {
      const size_t row_bytes = static_cast<size_t>(d) * DTypeSize(kv.dtype);
      for (int64_t r = 0; r < run; ++r) {
        ConvertToF32(kv.dtype, src + r * row_bytes, dst + r * row_stride, d);
        std::fill(dst + r * row_stride + d, dst + (r + 1) * row_stride, 0.0f);
      }
    }
    t += run;
  }
}

// FinishRow normalizes an accumulated output row and writes it and its lse.
// m is the running maximum in log2 units, l the running sum.
void FinishRow(const float* acc, float m, float l, int d, float* out,
               float* lse) {
  if (l > 0.0f) {
    const float inv = 1.0f / l;
    for (int x = 0; x < d; ++x) out[x] = acc[x] * inv;
    if (lse != nullptr) *lse = (m + std::log2(l)) * kLn2;
  } else {
    std::fill(out, out + d, 0.0f);
    if (lse != nullptr) *lse = kNegInf;
  }
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// AllocFloats returns 64-byte aligned storage for n floats.
std::unique_ptr<float, FreeDeleter> AllocFloats(size_t n) {
  const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
  return std::unique_ptr<float, FreeDeleter>(
      static_cast<float*>(std::aligned_alloc(64, bytes)));
}

// ---------------------------------------------------------------------------
// Portable path: one query token and kv head at a time, keys one by one.

void AttentionScalar(const Problem& p) {
  const PagedKv& kv = *p.kv;
  const int d = p.head_dim;
  const int g_count = p.group;
  const int64_t items = p.n_q * kv.num_kv_heads;
#pragma omp parallel
  {
    auto k_row = AllocFloats(d);
    auto v_row = AllocFloats(d);
    auto q_rows = AllocFloats(static_cast<size_t>(g_count) * d);
    auto acc = AllocFloats(static_cast<size_t>(g_count) * d);
    auto m = AllocFloats(g_count);
    auto l = AllocFloats(g_count);
#pragma omp for schedule(dynamic, 4)
    for (int64_t item = 0; item < items; ++item) {
      const int64_t i = item / kv.num_kv_heads;
      const int h = static_cast<int>(item % kv.num_kv_heads);
      const float* q =
          p.q + i * p.q_stride + static_cast<int64_t>(h) * g_count * d;
      for (int x = 0; x < g_count * d; ++x) {
        q_rows.get()[x] = q[x] * p.scale * kLog2e;
        acc.get()[x] = 0.0f;
      }
      std::fill(m.get(), m.get() + g_count, kNegInf);
      std::fill(l.get(), l.get() + g_count, 0.0f);
      const int64_t visible = VisibleKeys(p, i);
      for (int64_t j = 0; j < visible; ++j) {
        LoadKvTile(kv.k_blocks, kv, h, j, 1, d, k_row.get());
        LoadKvTile(kv.v_blocks, kv, h, j, 1, d, v_row.get());
        for (int g = 0; g < g_count; ++g) {
          const float* qg = q_rows.get() + g * d;
          float s = 0.0f;
          for (int x = 0; x < d; ++x) s += qg[x] * k_row.get()[x];
          const float m_new = std::max(m.get()[g], s);
          const float alpha = std::exp2(m.get()[g] - m_new);
          const float weight = std::exp2(s - m_new);
          float* a = acc.get() + g * d;
          for (int x = 0; x < d; ++x)
            a[x] = a[x] * alpha + weight * v_row.get()[x];
          l.get()[g] = l.get()[g] * alpha + weight;
          m.get()[g] = m_new;
        }
      }
      for (int g = 0; g < g_count; ++g) {
        const int head = h * g_count + g;
        FinishRow(acc.get() + g * d, m.get()[g], l.get()[g], d,
                  p.o + i * p.o_stride + static_cast<int64_t>(head) * d,
                  p.lse != nullptr ? p.lse + i * p.num_heads + head : nullptr);
      }
    }
  }
}

// ---------------------------------------------------------------------------
// AVX-512 path.
//
// A work item is one kv head and a tile of query tokens; the rows of the tile
// are (token, query head of the group) pairs, about 64 of them, so the K and
// V tiles converted to fp32 serve every query head that shares them. Scores
// live transposed, S[key][row], with rows along vector lanes:
//   QK^T: S[j][r] = sum_x K[j][x] * Qt[x][r]  (K broadcast, Q^T in vectors)
//   PV:   O[r][x] += sum_j S[j][r] * V[j][x]  (S broadcast, V in vectors)
// so neither K nor V needs a transpose, and the softmax's row maxima and sums
// are element-wise across keys. Q is pre-scaled by scale * log2(e) so that
// the softmax uses exp2.

constexpr int kTargetRows = 64;   // Rows of a query tile.
constexpr int kKeyTile = 128;     // Keys of a key tile.
constexpr int kQkKeys = 6;        // Keys per QK^T micro-kernel call.
constexpr int kQkRowVectors = 4;  // Row vectors per QK^T micro-kernel call.
constexpr int kPvRows = 6;        // Rows per PV micro-kernel call.
constexpr int kPvVectors = 4;     // Head-dim vectors per PV call.

struct TileShape {
  int tokens;  // Query tokens per tile.
  int rows;    // tokens * group.
  int rows_p;  // rows rounded up to 16.
  int d;       // head_dim.
  int d_p;     // head_dim rounded up to 16.
};

// The micro-kernels of the tile path come in two kinds with one interface, so
// that the loops around them (QkTile, PvTile) are shared:
//
//   Fp32Tiles: Qt[x][r], K[j][x], P = S[j][r] and V[j][x] in fp32; an inner
//     step is one element (x for QK^T, key j for PV) and one FMA per lane.
//   Bf16Tiles: the same matrices in bf16 with pairs of adjacent elements of
//     the summed dimension interleaved: Qt[x/2][r][x%2], K[j][x] (pairs are
//     adjacent already), P[j/2][r][j%2], V[j/2][x][j%2]. An inner step is a
//     pair and one vdpbf16ps per lane (two products summed into fp32).
//
// kPack is the number of elements per lane and step (1 or 2): offsets along
// rows (of Qt and P) and columns (of V) scale by it.

// Elements of type T at p + offset, as a 32-bit value (a pair when T is bf16).
template <typename T>
inline int32_t Load32(const T* p) {
  int32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

struct Fp32Tiles {
  using Elem = float;
  static constexpr int kPack = 1;

  // S[j][0..16*RV) for KJ keys: qt points at row 0 of the block in Q^T (row
  // stride rows_p), k at the first key (row stride k_stride), s at S[0][row
  // 0]; `steps` = head_dim.
  template <int RV, int KJ>
  LONGCTX_TARGET_AVX512 static void Qk(const float* qt, int rows_p,
                                       const float* k, int k_stride, int steps,
                                       float* s) {
    __m512 acc[KJ][RV];
#pragma GCC unroll 8
    for (int kj = 0; kj < KJ; ++kj) {
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) acc[kj][rv] = _mm512_setzero_ps();
    }
    for (int x = 0; x < steps; ++x) {
      __m512 qv[RV];
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) {
        qv[rv] = _mm512_load_ps(qt + x * rows_p + 16 * rv);
      }
#pragma GCC unroll 8
      for (int kj = 0; kj < KJ; ++kj) {
        const __m512 kb = _mm512_set1_ps(k[kj * k_stride + x]);
#pragma GCC unroll 4
        for (int rv = 0; rv < RV; ++rv) {
          acc[kj][rv] = _mm512_fmadd_ps(qv[rv], kb, acc[kj][rv]);
        }
      }
    }
#pragma GCC unroll 8
    for (int kj = 0; kj < KJ; ++kj) {
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) {
        _mm512_store_ps(s + kj * rows_p + 16 * rv, acc[kj][rv]);
      }
    }
  }

  // O[r][0..16*DV) = alpha[r] * O[r][..] + sum_j P[j][r] * V[j][..] for R
  // rows: p points at P[0][row 0] (row stride rows_p), v at V[0][first column]
  // (row stride d_p), o at O[row 0][first column] (row stride d_p); `steps` =
  // keys.
  template <int R, int DV>
  LONGCTX_TARGET_AVX512 static void Pv(const float* p, int rows_p,
                                       const float* v, int d_p, int steps,
                                       const float* alpha, float* o) {
    __m512 acc[R][DV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        acc[r][dv] = _mm512_mul_ps(_mm512_load_ps(o + r * d_p + 16 * dv), a);
      }
    }
    for (int j = 0; j < steps; ++j) {
      __m512 vv[DV];
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        vv[dv] = _mm512_load_ps(v + j * d_p + 16 * dv);
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 pb = _mm512_set1_ps(p[j * rows_p + r]);
#pragma GCC unroll 4
        for (int dv = 0; dv < DV; ++dv) {
          acc[r][dv] = _mm512_fmadd_ps(pb, vv[dv], acc[r][dv]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        _mm512_store_ps(o + r * d_p + 16 * dv, acc[r][dv]);
      }
    }
  }
};

struct Bf16Tiles {
  using Elem = uint16_t;
  static constexpr int kPack = 2;

  // As Fp32Tiles::Qk; qt is Qt[x/2][r][x%2] (2 * rows_p elements per pair),
  // k rows have k_stride >= 2 * steps elements, steps = pairs of head_dim.
  template <int RV, int KJ>
  LONGCTX_TARGET_AVX512_BF16 static void Qk(const uint16_t* qt, int rows_p,
                                            const uint16_t* k, int k_stride,
                                            int steps, float* s) {
    __m512 acc[KJ][RV];
#pragma GCC unroll 8
    for (int kj = 0; kj < KJ; ++kj) {
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) acc[kj][rv] = _mm512_setzero_ps();
    }
    for (int x = 0; x < steps; ++x) {
      __m512bh qv[RV];
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) {
        qv[rv] = (__m512bh)_mm512_load_si512(qt + 2 * (x * rows_p + 16 * rv));
      }
#pragma GCC unroll 8
      for (int kj = 0; kj < KJ; ++kj) {
        const __m512bh kb =
            (__m512bh)_mm512_set1_epi32(Load32(k + kj * k_stride + 2 * x));
#pragma GCC unroll 4
        for (int rv = 0; rv < RV; ++rv) {
          acc[kj][rv] = _mm512_dpbf16_ps(acc[kj][rv], qv[rv], kb);
        }
      }
    }
#pragma GCC unroll 8
    for (int kj = 0; kj < KJ; ++kj) {
#pragma GCC unroll 4
      for (int rv = 0; rv < RV; ++rv) {
        _mm512_store_ps(s + kj * rows_p + 16 * rv, acc[kj][rv]);
      }
    }
  }

  // As Fp32Tiles::Pv; p is P[j/2][r][j%2], v is V[j/2][x][j%2] (2 * d_p
  // elements per pair), steps = pairs of keys.
  template <int R, int DV>
  LONGCTX_TARGET_AVX512_BF16 static void Pv(const uint16_t* p, int rows_p,
                                            const uint16_t* v, int d_p,
                                            int steps, const float* alpha,
                                            float* o) {
    __m512 acc[R][DV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        acc[r][dv] = _mm512_mul_ps(_mm512_load_ps(o + r * d_p + 16 * dv), a);
      }
    }
    for (int j = 0; j < steps; ++j) {
      __m512bh vv[DV];
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        vv[dv] = (__m512bh)_mm512_load_si512(v + 2 * (j * d_p + 16 * dv));
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512bh pb =
            (__m512bh)_mm512_set1_epi32(Load32(p + 2 * (j * rows_p + r)));
#pragma GCC unroll 4
        for (int dv = 0; dv < DV; ++dv) {
          acc[r][dv] = _mm512_dpbf16_ps(acc[r][dv], pb, vv[dv]);
        }
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
      for (int dv = 0; dv < DV; ++dv) {
        _mm512_store_ps(o + r * d_p + 16 * dv, acc[r][dv]);
      }
    }
  }
};

template <class K, int RV>
void QkRowBlock(const typename K::Elem* qt, int rows_p,
                const typename K::Elem* k, int k_stride, int steps, int keys,
                float* s) {
  int j = 0;
  for (; j + kQkKeys <= keys; j += kQkKeys) {
    K::template Qk<RV, kQkKeys>(qt, rows_p, k + j * k_stride, k_stride, steps,
                                s + j * rows_p);
  }
  const auto* kj = k + j * k_stride;
  float* sj = s + j * rows_p;
  switch (keys - j) {
    case 1:
      K::template Qk<RV, 1>(qt, rows_p, kj, k_stride, steps, sj);
      break;
    case 2:
      K::template Qk<RV, 2>(qt, rows_p, kj, k_stride, steps, sj);
      break;
    case 3:
      K::template Qk<RV, 3>(qt, rows_p, kj, k_stride, steps, sj);
      break;
    case 4:
      K::template Qk<RV, 4>(qt, rows_p, kj, k_stride, steps, sj);
      break;
    case 5:
      K::template Qk<RV, 5>(qt, rows_p, kj, k_stride, steps, sj);
      break;
    default:
      break;
  }
}

// S = K Q^T for `keys` keys and all rows_p rows.
template <class K>
void QkTile(const typename K::Elem* qt, int rows_p, const typename K::Elem* k,
            int k_stride, int steps, int keys, float* s) {
  for (int r = 0; r < rows_p; r += 16 * kQkRowVectors) {
    const auto* q = qt + K::kPack * r;
    switch (std::min(kQkRowVectors, (rows_p - r) / 16)) {
      case 1:
        QkRowBlock<K, 1>(q, rows_p, k, k_stride, steps, keys, s + r);
        break;
      case 2:
        QkRowBlock<K, 2>(q, rows_p, k, k_stride, steps, keys, s + r);
        break;
      case 3:
        QkRowBlock<K, 3>(q, rows_p, k, k_stride, steps, keys, s + r);
        break;
      default:
        QkRowBlock<K, 4>(q, rows_p, k, k_stride, steps, keys, s + r);
        break;
    }
  }
}

template <class K, int DV>
void PvColumnBlock(const typename K::Elem* p, int rows, int rows_p,
                   const typename K::Elem* v, int d_p, int steps,
                   const float* alpha, float* o) {
  int r = 0;
  for (; r + kPvRows <= rows; r += kPvRows) {
    K::template Pv<kPvRows, DV>(p + K::kPack * r, rows_p, v, d_p, steps,
                                alpha + r, o + r * d_p);
  }
  const auto* pr = p + K::kPack * r;
  float* orow = o + r * d_p;
  switch (rows - r) {
    case 1:
      K::template Pv<1, DV>(pr, rows_p, v, d_p, steps, alpha + r, orow);
      break;
    case 2:
      K::template Pv<2, DV>(pr, rows_p, v, d_p, steps, alpha + r, orow);
      break;
    case 3:
      K::template Pv<3, DV>(pr, rows_p, v, d_p, steps, alpha + r, orow);
      break;
    case 4:
      K::template Pv<4, DV>(pr, rows_p, v, d_p, steps, alpha + r, orow);
      break;
    case 5:
      K::template Pv<5, DV>(pr, rows_p, v, d_p, steps, alpha + r, orow);
      break;
    default:
      break;
  }
}

// O = diag(alpha) O + P^T V for the first `rows` rows.
template <class K>
void PvTile(const typename K::Elem* p, int rows, int rows_p,
            const typename K::Elem* v, int d_p, int steps, const float* alpha,
            float* o) {
  for (int c = 0; c < d_p; c += 16 * kPvVectors) {
    const auto* vc = v + K::kPack * c;
    switch (std::min(kPvVectors, (d_p - c) / 16)) {
      case 1:
        PvColumnBlock<K, 1>(p, rows, rows_p, vc, d_p, steps, alpha, o + c);
        break;
      case 2:
        PvColumnBlock<K, 2>(p, rows, rows_p, vc, d_p, steps, alpha, o + c);
        break;
      case 3:
        PvColumnBlock<K, 3>(p, rows, rows_p, vc, d_p, steps, alpha, o + c);
        break;
      default:
        PvColumnBlock<K, 4>(p, rows, rows_p, vc, d_p, steps, alpha, o + c);
        break;
    }
  }
}

// InterleaveBf16 rounds a and b to bf16 and returns their lanes interleaved:
// a[0], b[0], a[1], b[1], ... (the pair layout of Bf16Tiles).
LONGCTX_TARGET_AVX512_BF16 inline __m512i InterleaveBf16(__m512 a, __m512 b) {
  // cvtne2ps puts its second operand in the low 16 elements.
  const __m512i both = (__m512i)_mm512_cvtne2ps_pbh(b, a);
  const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11,
                                         26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21,
                                         5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  return _mm512_permutexvar_epi16(order, both);
}

// SoftmaxMax is the first half of the online-softmax update of 16 rows
// starting at row r of one key tile: masks S (when `mask`; qpos[r] is the
// last key index row r may see), and returns the value to subtract from the
// scores before exp2, having stored the new running maximum in m and
// alpha = exp2(m_old - m_new).
LONGCTX_TARGET_AVX512 inline __m512 SoftmaxMax(float* s, int rows_p, int keys,
                                               bool mask, int64_t key0,
                                               const int32_t* qpos, int r,
                                               float* m, float* alpha) {
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  const __m512 m_old = _mm512_load_ps(m + r);
  __m512 row_max = neg_inf;
  if (mask) {
    const __m512i last_visible = _mm512_load_si512(qpos + r);
    for (int j = 0; j < keys; ++j) {
      float* sj = s + j * rows_p + r;
      const __m512i key = _mm512_set1_epi32(static_cast<int32_t>(key0 + j));
      const __mmask16 hidden = _mm512_cmpgt_epi32_mask(key, last_visible);
      const __m512 v = _mm512_mask_mov_ps(_mm512_load_ps(sj), hidden, neg_inf);
      _mm512_store_ps(sj, v);
      row_max = _mm512_max_ps(row_max, v);
    }
  } else {
    for (int j = 0; j < keys; ++j) {
      row_max = _mm512_max_ps(row_max, _mm512_load_ps(s + j * rows_p + r));
    }
  }
  const __m512 m_new = _mm512_max_ps(m_old, row_max);
  // Rows that have seen no key yet keep m = -inf; subtract 0 instead so
  // that exp2(-inf - m) is 0 rather than NaN.
  const __m512 m_sub =
      _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_EQ_OQ),
                         _mm512_setzero_ps());
  _mm512_store_ps(m + r, m_new);
  _mm512_store_ps(alpha + r, internal::Exp2Avx512(_mm512_sub_ps(m_old, m_sub)));
  return m_sub;
}

// Online-softmax update of one key tile: masks S (when `mask`), turns it into
// P = exp2(S - m_new) in place, and updates m, l and alpha = exp2(m_old -
// m_new) per row. qpos[r] is the last key index row r may see.
LONGCTX_TARGET_AVX512 void SoftmaxTile(float* s, int rows_p, int keys,
                                       bool mask, int64_t key0,
                                       const int32_t* qpos, float* m, float* l,
                                       float* alpha) {
  for (int r = 0; r < rows_p; r += 16) {
    const __m512 m_sub =
        SoftmaxMax(s, rows_p, keys, mask, key0, qpos, r, m, alpha);
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < keys; ++j) {
      float* sj = s + j * rows_p + r;
      const __m512 e =
          internal::Exp2Avx512(_mm512_sub_ps(_mm512_load_ps(sj), m_sub));
      _mm512_store_ps(sj, e);
      sum = _mm512_add_ps(sum, e);
    }
    _mm512_store_ps(l + r, _mm512_fmadd_ps(_mm512_load_ps(l + r),
                                           _mm512_load_ps(alpha + r), sum));
  }
}

// SoftmaxTileBf16 is SoftmaxTile writing P in the pair layout of Bf16Tiles,
// P[j/2][r][j%2] (keys padded to an even count with zeros), to p_out.
LONGCTX_TARGET_AVX512_BF16 void SoftmaxTileBf16(float* s, int rows_p, int keys,
                                                bool mask, int64_t key0,
                                                const int32_t* qpos, float* m,
                                                float* l, float* alpha,
                                                uint16_t* p_out) {
  for (int r = 0; r < rows_p; r += 16) {
    const __m512 m_sub =
        SoftmaxMax(s, rows_p, keys, mask, key0, qpos, r, m, alpha);
    __m512 sum = _mm512_setzero_ps();
    // P is rounded to bf16: the cheaper exp2 is exact enough (S - m_new is
    // never positive).
    for (int j = 0; j < keys; j += 2) {
      const __m512 e0 = internal::Exp2ForBf16Avx512(
          _mm512_sub_ps(_mm512_load_ps(s + j * rows_p + r), m_sub));
      const __m512 e1 =
          j + 1 < keys ? internal::Exp2ForBf16Avx512(_mm512_sub_ps(
                             _mm512_load_ps(s + (j + 1) * rows_p + r), m_sub))
                       : _mm512_setzero_ps();
      _mm512_store_si512(p_out + 2 * ((j / 2) * rows_p + r),
                         InterleaveBf16(e0, e1));
      sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
    }
    _mm512_store_ps(l + r, _mm512_fmadd_ps(_mm512_load_ps(l + r),
                                           _mm512_load_ps(alpha + r), sum));
  }
}

// LoadKv16 returns elements [16x, 16x + 16) of a K or V row as fp32; lanes
// outside `mask` are 0.
template <DType kType>
LONGCTX_TARGET_AVX512 inline __m512 LoadKv16(const uint8_t* row, int x,
                                             __mmask16 mask) {
  if constexpr (kType == DType::kF32) {
    return _mm512_maskz_loadu_ps(mask,
                                 reinterpret_cast<const float*>(row) + 16 * x);
  } else {
    const __m256i bits = _mm256_maskz_loadu_epi16(
        mask, reinterpret_cast<const uint16_t*>(row) + 16 * x);
    if constexpr (kType == DType::kF16) {
      return _mm512_cvtph_ps(bits);
    } else {
      return _mm512_castsi512_ps(
          _mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
    }
  }
}

// LoadKvTileBf16 converts tokens [t0, t0 + count) of kv head h to the bf16
// tiles of Bf16Tiles: K[j][0..d_p) and V[j/2][0..d_p)[j%2], zero-padded past
// head_dim and (V) to an even number of keys.
template <DType kType>
LONGCTX_TARGET_AVX512_BF16 void LoadKvTileBf16(const PagedKv& kv, int h,
                                               int64_t t0, int count, int d_p,
                                               uint16_t* k_out,
                                               uint16_t* v_out) {
  const int dv = d_p / 16;
  const __mmask16 tail = internal::TailMask(kv.head_dim - 16 * (dv - 1));
  const size_t row_bytes = static_cast<size_t>(kv.head_dim) * DTypeSize(kType);
  const uint8_t* k_row = nullptr;
  const uint8_t* v_row = nullptr;
  int64_t run = 0;  // Rows left in the current block.
  const uint8_t* v_prev = nullptr;
  for (int j = 0; j < count + (count & 1); ++j) {
    const bool real = j < count;
    if (real) {
      if (run == 0) {
        k_row = KvRows(kv.k_blocks, kv, t0 + j, h, &run);
        v_row = KvRows(kv.v_blocks, kv, t0 + j, h, &run);
      } else {
        k_row += row_bytes;
        v_row += row_bytes;
      }
      --run;
      for (int x = 0; x < dv; ++x) {
        const __m512 k16 =
            LoadKv16<kType>(k_row, x, x + 1 < dv ? 0xffff : tail);
        _mm256_store_si256(reinterpret_cast<__m256i*>(k_out + j * d_p + 16 * x),
                           (__m256i)_mm512_cvtneps_pbh(k16));
      }
    }
    if (j % 2 == 0) {
      v_prev = v_row;
      continue;
    }
    for (int x = 0; x < dv; ++x) {
      const __mmask16 mask = x + 1 < dv ? 0xffff : tail;
      const __m512 v0 = LoadKv16<kType>(v_prev, x, mask);
      const __m512 v1 =
          real ? LoadKv16<kType>(v_row, x, mask) : _mm512_setzero_ps();
      _mm512_store_si512(v_out + 2 * ((j / 2) * d_p + 16 * x),
                         InterleaveBf16(v0, v1));
    }
  }
}

// Per-thread buffers of the AVX-512 paths.
struct Avx512Scratch {
  Avx512Scratch(const TileShape& t, bool bf16)
      : storage(AllocFloats(Floats(t, bf16))) {
    float* f = storage.get();
    qt = f;
    f += static_cast<size_t>(t.d_p) * t.rows_p;
    k = f;
    f += static_cast<size_t>(kKeyTile) * t.d_p;
    v = f;
    f += static_cast<size_t>(kKeyTile) * t.d_p;
    s = f;
    f += static_cast<size_t>(kKeyTile) * t.rows_p;
    o = f;
    f += static_cast<size_t>(t.rows_p) * t.d_p;
    m = f;
    f += t.rows_p;
    l = f;
    f += t.rows_p;
    alpha = f;
    f += t.rows_p;
    qpos = reinterpret_cast<int32_t*>(f);
    f += t.rows_p;
    if (bf16) {
      // bf16 copies take half the floats of their fp32 counterparts.
      qb = reinterpret_cast<uint16_t*>(f);
      f += static_cast<size_t>(t.d_p) * t.rows_p / 2;
      kb = reinterpret_cast<uint16_t*>(f);
      f += static_cast<size_t>(kKeyTile) * t.d_p / 2;
      vb = reinterpret_cast<uint16_t*>(f);
      f += static_cast<size_t>(kKeyTile) * t.d_p / 2;
      pb = reinterpret_cast<uint16_t*>(f);
    }
  }

  // Every part is a multiple of 16 floats (8 for the bf16 ones, whose sizes
  // are multiples of 16 * 16 / 2), so each stays 64-byte aligned.
  static size_t Floats(const TileShape& t, bool bf16) {
    const size_t fp32 = static_cast<size_t>(t.d_p) * t.rows_p +
                        2 * static_cast<size_t>(kKeyTile) * t.d_p +
                        static_cast<size_t>(kKeyTile) * t.rows_p +
                        static_cast<size_t>(t.rows_p) * t.d_p + 4 * t.rows_p;
    return bf16 ? fp32 + (static_cast<size_t>(t.d_p) * t.rows_p +
                          2 * static_cast<size_t>(kKeyTile) * t.d_p +
                          static_cast<size_t>(kKeyTile) * t.rows_p) /
                             2
                : fp32;
  }

  std::unique_ptr<float, FreeDeleter> storage;
  float* qt;  // Q^T [d][rows_p] (tiles), or Q [rows][d_p] (decode).
  float* k;   // K tile [kKeyTile][d] (tiles).
  float* v;   // V tile [kKeyTile][d_p] (tiles).
  float* s;   // S [kKeyTile][rows_p] (tiles), or [rows][16] (decode).
  float* o;   // Unnormalized output [rows_p][d_p].
  float* m;   // Running maximum per row, log2 units.
  float* l;   // Running sum per row.
  float* alpha;
  int32_t* qpos;  // Last key index visible to the row.
  // Bf16Tiles only: Q^T [d_p/2][rows_p][2], K [kKeyTile][d_p],
  // V [kKeyTile/2][d_p][2], P [kKeyTile/2][rows_p][2].
  uint16_t* qb = nullptr;
  uint16_t* kb = nullptr;
  uint16_t* vb = nullptr;
  uint16_t* pb = nullptr;
};

// DecodePaddedRows is the number of query rows the decode paths compute for
// `rows` rows (at most kDecodeRows): 1, 2, 4 or 8.
int DecodePaddedRows(int rows) {
  return rows <= 1 ? 1 : rows <= 2 ? 2 : rows <= 4 ? 4 : 8;
}

// PrepareTile loads query tile [i0, i0 + tokens) of kv head h into the
// scratch, scaled by scale * log2(e) (transposed unless `row_major`; also in
// bf16 pairs when the scratch has them), and resets the running state.
void PrepareTile(const Problem& p, const TileShape& t, int h, int64_t i0,
                 int tokens, bool row_major, Avx512Scratch& w) {
  const int d = t.d;
  const int rows_p = t.rows_p;
  const float q_mult = p.scale * kLog2e;
  std::fill(w.qt, w.qt + static_cast<size_t>(t.d_p) * rows_p, 0.0f);
  for (int r = 0; r < rows_p; ++r) {
    w.qpos[r] = std::numeric_limits<int32_t>::max();
  }
  for (int tok = 0; tok < tokens; ++tok) {
    const int64_t last = VisibleKeys(p, i0 + tok) - 1;
    for (int g = 0; g < p.group; ++g) {
      const int r = tok * p.group + g;
      const float* q = p.q + (i0 + tok) * p.q_stride +
                       (static_cast<int64_t>(h) * p.group + g) * d;
      if (row_major) {
        for (int x = 0; x < d; ++x) w.qt[r * t.d_p + x] = q[x] * q_mult;
      } else {
        for (int x = 0; x < d; ++x) w.qt[x * rows_p + r] = q[x] * q_mult;
      }
      w.qpos[r] = static_cast<int32_t>(last);
    }
  }
  if (w.qb != nullptr && row_major) {
    // Decode over a bf16 cache (DecodeRangeBf16): Q row-major in bf16, the
    // rows padded as the decode paths pad them (to 1, 2, 4 or 8).
    const int rows = DecodePaddedRows(t.rows);
    for (int r = 0; r < rows; ++r) {
      for (int x = 0; x < t.d_p; ++x) {
        w.qb[r * t.d_p + x] = F32ToBf16(w.qt[r * t.d_p + x]);
      }
    }
  }
  if (w.qb != nullptr && !row_major) {
    // Qt[x][r] -> Qt[x/2][r][x%2]; padded x and rows are zero in w.qt.
    for (int x = 0; x < t.d_p; x += 2) {
      const float* q0 = w.qt + x * rows_p;
      uint16_t* out = w.qb + x * rows_p;
      for (int r = 0; r < rows_p; ++r) {
        out[2 * r] = F32ToBf16(q0[r]);
        out[2 * r + 1] = F32ToBf16(q0[rows_p + r]);
      }
    }
  }
  std::fill(w.o, w.o + static_cast<size_t>(rows_p) * t.d_p, 0.0f);
  std::fill(w.m, w.m + rows_p, kNegInf);
  std::fill(w.l, w.l + rows_p, 0.0f);
}

// GroupTile is one prepared query tile of a group: its scratch (queries and
// running state), first token, token count, and the keys it sees.
struct GroupTile {
  Avx512Scratch* w;
  int64_t i0;
  int tokens;
  int64_t j_end;
};

// TileGroupRange runs keys [j_begin, tile.j_end) for each prepared tile of a
// group of one kv head, converting each K/V tile once, into kv_w's buffers
// (fp32, or bf16 when kv_w has bf16 buffers), for every tile of the group
// that sees it.
void TileGroupRange(const Problem& p, const TileShape& t, int h,
                    const GroupTile* group, int n, int64_t j_begin,
                    Avx512Scratch& kv_w) {
  const PagedKv& kv = *p.kv;
  const bool bf16 = kv_w.qb != nullptr;
  int64_t max_end = j_begin;
  for (int g = 0; g < n; ++g) max_end = std::max(max_end, group[g].j_end);
  for (int64_t j0 = j_begin; j0 < max_end; j0 += kKeyTile) {
    const int loaded =
        static_cast<int>(std::min<int64_t>(kKeyTile, max_end - j0));
    if (!bf16) {
      LoadKvTile(kv.k_blocks, kv, h, j0, loaded, t.d, kv_w.k);
      LoadKvTile(kv.v_blocks, kv, h, j0, loaded, t.d_p, kv_w.v);
    } else {
      switch (kv.dtype) {
        case DType::kF16:
          LoadKvTileBf16<DType::kF16>(kv, h, j0, loaded, t.d_p, kv_w.kb,
                                      kv_w.vb);
          break;
        case DType::kF32:
          LoadKvTileBf16<DType::kF32>(kv, h, j0, loaded, t.d_p, kv_w.kb,
                                      kv_w.vb);
          break;
        case DType::kBf16:
          LoadKvTileBf16<DType::kBf16>(kv, h, j0, loaded, t.d_p, kv_w.kb,
                                       kv_w.vb);
          break;
      }
    }
    for (int g = 0; g < n; ++g) {
      const GroupTile& tile = group[g];
      if (j0 >= tile.j_end) continue;
      Avx512Scratch& w = *tile.w;
      const int keys =
          static_cast<int>(std::min<int64_t>(loaded, tile.j_end - j0));
      const int rows = tile.tokens * p.group;
      // Keys before all_see are visible to every row of the tile.
      const int64_t all_see = VisibleKeys(p, tile.i0);
      if (!bf16) {
        QkTile<Fp32Tiles>(w.qt, t.rows_p, kv_w.k, t.d, t.d, keys, kv_w.s);
      } else {
        QkTile<Bf16Tiles>(w.qb, t.rows_p, kv_w.kb, t.d_p, (t.d + 1) / 2, keys,
                          kv_w.s);
      }
      if (!bf16) {
        SoftmaxTile(kv_w.s, t.rows_p, keys, j0 + keys > all_see, j0, w.qpos,
                    w.m, w.l, w.alpha);
        PvTile<Fp32Tiles>(kv_w.s, rows, t.rows_p, kv_w.v, t.d_p, keys, w.alpha,
                          w.o);
      } else {
        // Past `keys` the probabilities are 0 (an odd count pairs the last
        // key with a loaded key it does not see, or with zeros).
        SoftmaxTileBf16(kv_w.s, t.rows_p, keys, j0 + keys > all_see, j0, w.qpos,
                        w.m, w.l, w.alpha, kv_w.pb);
        PvTile<Bf16Tiles>(kv_w.pb, rows, t.rows_p, kv_w.vb, t.d_p,
                          (keys + 1) / 2, w.alpha, w.o);
      }
    }
  }
}

// TileRange runs keys [j_begin, j_end) for the prepared tile (rows of
// `tokens` tokens starting at i0), through K/V tiles converted to fp32, or to
// bf16 when the scratch has bf16 buffers.
void TileRange(const Problem& p, const TileShape& t, int h, int64_t i0,
               int tokens, int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  const GroupTile tile{&w, i0, tokens, j_end};
  TileGroupRange(p, t, h, &tile, 1, j_begin, w);
}

// ---------------------------------------------------------------------------
// Decode path: at most kDecodeRows rows (a few query tokens times the group).
// With so few rows a 16-lane vector over rows would be mostly padding, so here
// the lanes run along head_dim for q . k (one horizontal sum per score) and
// along keys for the softmax; K and V are read from the cache in place.

constexpr int kDecodeRows = 8;

// O[r][16 xb ..) = alpha[r] O[r][..] + sum_j P[r][j] V[j][..] for NV vectors.
template <int R, int NV, DType kType>
LONGCTX_TARGET_AVX512 void DecodePv(const uint8_t* v, size_t row_bytes,
                                    int keys, int xb, int dv, __mmask16 tail,
                                    const float* p, int p_stride,
                                    const float* alpha, float* o, int d_p) {
  __m512 acc[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    const __m512 a = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 4
    for (int k = 0; k < NV; ++k) {
      acc[r][k] = _mm512_mul_ps(_mm512_load_ps(o + r * d_p + 16 * (xb + k)), a);
    }
  }
  for (int j = 0; j < keys; ++j) {
    __m512 vv[NV];
#pragma GCC unroll 4
    for (int k = 0; k < NV; ++k) {
      vv[k] = LoadKv16<kType>(v + j * row_bytes, xb + k,
                              xb + k + 1 < dv ? 0xffff : tail);
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 pb = _mm512_set1_ps(p[r * p_stride + j]);
#pragma GCC unroll 4
      for (int k = 0; k < NV; ++k) {
        acc[r][k] = _mm512_fmadd_ps(pb, vv[k], acc[r][k]);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int k = 0; k < NV; ++k) {
      _mm512_store_ps(o + r * d_p + 16 * (xb + k), acc[r][k]);
    }
  }
}

// Sum16 returns the vector whose lane j is the sum of the 16 lanes of
// a[16 j .. 16 j + 16) (16 vectors, 64-byte aligned): a transpose-and-add
// tree, 45 operations for 16 sums instead of 16 horizontal reductions.
LONGCTX_TARGET_AVX512 inline __m512 Sum16(const float* a) {
  // Within each 128-bit lane: t[i] = (x0+x2, y0+y2, x1+x3, y1+y3) for
  // x = a[2i], y = a[2i+1].
  __m512 t[8];
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    const __m512 x = _mm512_load_ps(a + 32 * i);
    const __m512 y = _mm512_load_ps(a + 32 * i + 16);
    t[i] = _mm512_add_ps(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
  }
  // u[i], per 128-bit lane: the partial sums of vectors 4i .. 4i+3.
  __m512 u[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    u[i] = _mm512_add_ps(_mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0x44),
                         _mm512_shuffle_ps(t[2 * i], t[2 * i + 1], 0xee));
  }
  // Add 128-bit lanes pairwise, twice: lane L of the result holds vectors
  // 4L .. 4L+3.
  const __m512 v0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88),
                                  _mm512_shuffle_f32x4(u[0], u[1], 0xdd));
  const __m512 v1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88),
                                  _mm512_shuffle_f32x4(u[2], u[3], 0xdd));
  return _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x88),
                       _mm512_shuffle_f32x4(v0, v1, 0xdd));
}

// How far ahead of the keys being computed the decode path asks for the next
// keys' K and V rows: the loop computes too long per row for the hardware
// prefetcher alone to keep a core's stream of cache misses going.
constexpr int64_t kDecodePrefetchKeys = 64;

// Keys of a decode run: one pass of q . k, one softmax, one pass of p . v.
// [R][kDecodeRun] scores fit the scratch's S (kKeyTile x 16 floats).
constexpr int kDecodeRun = 128;

// PrefetchTensorRows asks for rows [t, t + count) of kv head h of one tensor
// (K or V), clipped to t's block, into L2 (prefetcht1): prefetched into L1,
// the rows evicted the run's scores and queries and held L1's few miss
// buffers, and a decode step at 128K took 1.3x longer (docs/BENCHMARKS.md).
inline void PrefetchTensorRows(const void* const* blocks, const PagedKv& kv,
                               int h, int64_t t, int64_t count,
                               size_t row_bytes) {
  int64_t run;
  const char* rows =
      reinterpret_cast<const char*>(KvRows(blocks, kv, t, h, &run));
  const size_t bytes = static_cast<size_t>(std::min(count, run)) * row_bytes;
  for (size_t b = 0; b < bytes; b += 64) __builtin_prefetch(rows + b, 0, 2);
}

// PrefetchGroup asks for the V rows of keys [j, j + group) (read after the
// run's q . k) and the K rows kDecodePrefetchKeys ahead of j, up to j_end.
inline void PrefetchGroup(const PagedKv& kv, int h, int64_t j, int group,
                          int64_t j_end, size_t row_bytes) {
  PrefetchTensorRows(kv.v_blocks, kv, h, j, group, row_bytes);
  if (j + kDecodePrefetchKeys < j_end) {
    PrefetchTensorRows(kv.k_blocks, kv, h, j + kDecodePrefetchKeys,
                       std::min<int64_t>(16, j_end - j - kDecodePrefetchKeys),
                       row_bytes);
  }
}

// GroupScores folds the products part[r][0..16) of rows r < R (see
// DecodeRange) into the scores of keys [key0, key0 + group), stored at
// s + r * kDecodeRun; lanes past the group (stale parts) and keys after a
// row's position qpos[r] are -inf.
LONGCTX_TARGET_AVX512 inline void GroupScores(int rows, const float* part,
                                              const int32_t* qpos, int64_t key0,
                                              int group, float* s) {
  for (int r = 0; r < rows; ++r) {
    const int64_t visible = std::clamp<int64_t>(qpos[r] - key0 + 1, 0, group);
    _mm512_store_ps(
        s + r * kDecodeRun,
        _mm512_mask_mov_ps(_mm512_set1_ps(kNegInf),
                           internal::TailMask(static_cast<int>(visible)),
                           Sum16(part + r * 256)));
  }
}

// RunSoftmax is the online-softmax update over a run of `keys` scores of
// each of `rows` rows (row r at s + r * kDecodeRun, -inf past the run, in
// whole vectors): the scores become exp2(s - m_new) in place, and m, l and
// alpha = exp2(m_old - m_new) are updated per row.
LONGCTX_TARGET_AVX512 inline void RunSoftmax(int rows, int keys, float* s,
                                             float* m, float* l, float* alpha) {
  const int vectors = (keys + 15) / 16;
  for (int r = 0; r < rows; ++r) {
    float* sr = s + r * kDecodeRun;
    __m512 run_max = _mm512_set1_ps(kNegInf);
    for (int i = 0; i < vectors; ++i) {
      run_max = _mm512_max_ps(run_max, _mm512_load_ps(sr + 16 * i));
    }
    const float m_old = m[r];
    const float m_new = std::max(m_old, _mm512_reduce_max_ps(run_max));
    const float m_sub = m_new == kNegInf ? 0.0f : m_new;  // See SoftmaxTile.
    const __m512 sub = _mm512_set1_ps(m_sub);
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < vectors; ++i) {
      const __m512 e =
          internal::Exp2Avx512(_mm512_sub_ps(_mm512_load_ps(sr + 16 * i), sub));
      _mm512_store_ps(sr + 16 * i, e);
      sum = _mm512_add_ps(sum, e);
    }
    const float a =
        _mm512_cvtss_f32(internal::Exp2Avx512(_mm512_set1_ps(m_old - m_sub)));
    l[r] = l[r] * a + _mm512_reduce_add_ps(sum);
    m[r] = m_new;
    alpha[r] = a;
  }
}

// DecodeRange runs keys [j_begin, j_end) for R prepared rows (Q row-major in
// w.qt), 16 keys at a time, each run of keys staying inside one block. DV is
// head_dim / 16 rounded up when it is 4 or 8 (head_dim 64 or 128: the loops
// over head_dim unroll, and the queries stay in registers), 0 otherwise.
template <int R, int DV, DType kType>
LONGCTX_TARGET_AVX512 void DecodeRange(const Problem& p, const TileShape& t,
                                       int h, int64_t j_begin, int64_t j_end,
                                       Avx512Scratch& w) {
  constexpr int kBlockVectors = R <= 4 ? 4 : 2;  // Keeps acc in registers.
  // Queries held in registers when they fit beside the accumulators.
  constexpr bool kQInRegisters = DV > 0 && R * DV <= 16;
  const PagedKv& kv = *p.kv;
  const int d_p = t.d_p;
  const int dv = DV > 0 ? DV : d_p / 16;
  const __mmask16 tail = internal::TailMask(t.d - 16 * (dv - 1));
  const size_t row_bytes = static_cast<size_t>(t.d) * DTypeSize(kType);
  const float* const q = w.qt;
  float* const s = w.s;     // [R][kDecodeRun]: scores, then probabilities.
  float* const part = w.k;  // [R][16 keys][16 lanes]: products before the sum.
  float* const m = w.m;
  float* const l = w.l;
  float* const alpha = w.alpha;
  const int32_t* const qpos = w.qpos;
  __m512 qr[kQInRegisters ? R : 1][kQInRegisters ? DV : 1];
  if constexpr (kQInRegisters) {
    for (int r = 0; r < R; ++r) {
      for (int x = 0; x < DV; ++x)
        qr[r][x] = _mm512_load_ps(q + r * d_p + 16 * x);
    }
  }
  // Runs of up to kDecodeRun keys inside one block: q . k over the run's K
  // rows, the softmax over the run, then p . v over its V rows, so that each
  // pass reads one contiguous stretch of the cache.
  for (int64_t j0 = j_begin; j0 < j_end;) {
    int64_t left;
    const uint8_t* k = KvRows(kv.k_blocks, kv, j0, h, &left);
    const uint8_t* v = KvRows(kv.v_blocks, kv, j0, h, &left);
    const int keys = static_cast<int>(
        std::min<int64_t>(std::min<int64_t>(kDecodeRun, left), j_end - j0));
    for (int g = 0; g < keys; g += 16) {
      const int group = std::min(16, keys - g);
      PrefetchGroup(kv, h, j0 + g, group, j_end, row_bytes);
      // q . k for every (row, key): the per-lane products of key j and row
      // r go to part[r][j], and Sum16 folds them into the 16 scores.
      for (int j = 0; j < group; ++j) {
        const uint8_t* kj = k + (g + j) * row_bytes;
        __m512 acc[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
        if constexpr (DV > 0) {
#pragma GCC unroll 8
          for (int x = 0; x < DV; ++x) {
            const __m512 kx =
                LoadKv16<kType>(kj, x, x + 1 < DV ? __mmask16{0xffff} : tail);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              const __m512 qx =
                  kQInRegisters
                      ? qr[kQInRegisters ? r : 0][kQInRegisters ? x : 0]
                      : _mm512_load_ps(q + r * d_p + 16 * x);
              acc[r] = _mm512_fmadd_ps(qx, kx, acc[r]);
            }
          }
        } else {
          for (int x = 0; x < dv; ++x) {
            const __m512 kx =
                LoadKv16<kType>(kj, x, x + 1 < dv ? 0xffff : tail);
#pragma GCC unroll 8
            for (int r = 0; r < R; ++r) {
              acc[r] = _mm512_fmadd_ps(_mm512_load_ps(q + r * d_p + 16 * x), kx,
                                       acc[r]);
            }
          }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          _mm512_store_ps(part + (r * 16 + j) * 16, acc[r]);
        }
      }
      GroupScores(R, part, qpos, j0 + g, group, s + g);
    }
    RunSoftmax(R, keys, s, m, l, alpha);
    for (int xb = 0; xb < dv; xb += kBlockVectors) {
      switch (std::min(kBlockVectors, dv - xb)) {
        case 1:
          DecodePv<R, 1, kType>(v, row_bytes, keys, xb, dv, tail, s, kDecodeRun,
                                alpha, w.o, d_p);
          break;
        case 2:
          DecodePv<R, 2, kType>(v, row_bytes, keys, xb, dv, tail, s, kDecodeRun,
                                alpha, w.o, d_p);
          break;
        case 3:
          DecodePv<R, 3, kType>(v, row_bytes, keys, xb, dv, tail, s, kDecodeRun,
                                alpha, w.o, d_p);
          break;
        default:
          DecodePv<R, kBlockVectors, kType>(v, row_bytes, keys, xb, dv, tail, s,
                                            kDecodeRun, alpha, w.o, d_p);
          break;
      }
    }
    j0 += keys;
  }
}

// DecodeRangeBf16 is DecodeRange for a bf16 cache with compute kBf16 and
// head_dim = 32 * DW: keys and values are multiplied as stored with
// vdpbf16ps (32 products per instruction, no conversion), queries and
// probabilities rounded to bf16. q . k sums adjacent pairs of head_dim in
// each lane (rows are already pairs); p . v needs pairs of keys, so V rows
// j and j+1 are interleaved in registers.
template <int R, int DW>
LONGCTX_TARGET_AVX512_BF16 void DecodeRangeBf16(const Problem& p,
                                                const TileShape& t, int h,
                                                int64_t j_begin, int64_t j_end,
                                                Avx512Scratch& w) {
  constexpr int kD = 32 * DW;
  constexpr size_t kRowBytes = 2 * kD;
  constexpr bool kQInRegisters = R * DW <= 8;
  const PagedKv& kv = *p.kv;
  const int d_p = t.d_p;            // == kD.
  float* const s = w.s;             // [R][kDecodeRun] scores.
  float* const part = w.k;          // [R][16 keys][16 lanes].
  uint16_t* const pb = w.pb;        // [R][kDecodeRun] probabilities in bf16.
  const uint16_t* const qb = w.qb;  // [R][kD] queries (PrepareTile).
  float* const m = w.m;
  float* const l = w.l;
  float* const alpha = w.alpha;
  const int32_t* const qpos = w.qpos;
  __m512bh qr[kQInRegisters ? R : 1][kQInRegisters ? DW : 1];
  if constexpr (kQInRegisters) {
    for (int r = 0; r < R; ++r) {
      for (int x = 0; x < DW; ++x) {
        qr[r][x] = (__m512bh)_mm512_loadu_si512(qb + r * kD + 32 * x);
      }
    }
  }
  // V rows a (key j) and b (key j+1) -> pairs (a[x], b[x]) for x in [0, 16)
  // and [16, 32) of a 32-element chunk.
  const __m512i lo_pairs = _mm512_set_epi16(
      47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8, 39, 7, 38,
      6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
  const __m512i hi_pairs = _mm512_add_epi16(lo_pairs, _mm512_set1_epi16(16));
  // Runs of up to kDecodeRun keys inside one block, as in DecodeRange.
  for (int64_t j0 = j_begin; j0 < j_end;) {
    int64_t left;
    const uint8_t* k = KvRows(kv.k_blocks, kv, j0, h, &left);
    const uint8_t* v = KvRows(kv.v_blocks, kv, j0, h, &left);
    const int keys = static_cast<int>(
        std::min<int64_t>(std::min<int64_t>(kDecodeRun, left), j_end - j0));
    for (int g = 0; g < keys; g += 16) {
      const int group = std::min(16, keys - g);
      PrefetchGroup(kv, h, j0 + g, group, j_end, kRowBytes);
      for (int j = 0; j < group; ++j) {
        const uint8_t* kj = k + (g + j) * kRowBytes;
        __m512 acc[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int x = 0; x < DW; ++x) {
          const __m512bh kx = (__m512bh)_mm512_loadu_si512(kj + 64 * x);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) {
            const __m512bh qx =
                kQInRegisters
                    ? qr[kQInRegisters ? r : 0][kQInRegisters ? x : 0]
                    : (__m512bh)_mm512_loadu_si512(qb + r * kD + 32 * x);
            acc[r] = _mm512_dpbf16_ps(acc[r], qx, kx);
          }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          _mm512_store_ps(part + (r * 16 + j) * 16, acc[r]);
        }
      }
      GroupScores(R, part, qpos, j0 + g, group, s + g);
    }
    // The softmax over the run; the probabilities to pb in bf16.
    RunSoftmax(R, keys, s, m, l, alpha);
    for (int r = 0; r < R; ++r) {
      for (int i = 0; i < keys; i += 16) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(pb + r * kDecodeRun + i),
                            (__m256i)_mm512_cvtneps_pbh(
                                _mm512_load_ps(s + r * kDecodeRun + i)));
      }
    }
    // O[r] = alpha[r] O[r] + sum_j p[r][j] V[j], 32 columns at a time.
    for (int x = 0; x < DW; ++x) {
      __m512 acc[R][2];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const __m512 a = _mm512_set1_ps(alpha[r]);
        acc[r][0] = _mm512_mul_ps(_mm512_load_ps(w.o + r * d_p + 32 * x), a);
        acc[r][1] =
            _mm512_mul_ps(_mm512_load_ps(w.o + r * d_p + 32 * x + 16), a);
      }
      for (int j = 0; j < keys; j += 2) {
        const __m512i va = _mm512_loadu_si512(v + j * kRowBytes + 64 * x);
        // Past `keys` the probability is 0 (the run's last vector is padded
        // with zeros); the row read must still be real memory, so an odd
        // last key pairs with itself.
        const __m512i vb =
            j + 1 < keys ? _mm512_loadu_si512(v + (j + 1) * kRowBytes + 64 * x)
                         : va;
        const __m512bh lo =
            (__m512bh)_mm512_permutex2var_epi16(va, lo_pairs, vb);
        const __m512bh hi =
            (__m512bh)_mm512_permutex2var_epi16(va, hi_pairs, vb);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) {
          const __m512bh pp =
              (__m512bh)_mm512_set1_epi32(Load32(pb + r * kDecodeRun + j));
          acc[r][0] = _mm512_dpbf16_ps(acc[r][0], pp, lo);
          acc[r][1] = _mm512_dpbf16_ps(acc[r][1], pp, hi);
        }
      }
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        _mm512_store_ps(w.o + r * d_p + 32 * x, acc[r][0]);
        _mm512_store_ps(w.o + r * d_p + 32 * x + 16, acc[r][1]);
      }
    }
    j0 += keys;
  }
}

template <int R>
void DecodeRangeBf16ForDim(const Problem& p, const TileShape& t, int h,
                           int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  switch (t.d) {
    case 64:
      DecodeRangeBf16<R, 2>(p, t, h, j_begin, j_end, w);
      break;
    case 128:
      DecodeRangeBf16<R, 4>(p, t, h, j_begin, j_end, w);
      break;
    default:  // 256: DecodeBf16Applies allows no other head_dim.
      DecodeRangeBf16<R, 8>(p, t, h, j_begin, j_end, w);
      break;
  }
}

// DecodeBf16Applies says whether DecodeRangeBf16 serves the problem.
bool DecodeBf16Applies(const Problem& p) {
  return p.bf16 && p.kv->dtype == DType::kBf16 &&
         (p.head_dim == 64 || p.head_dim == 128 || p.head_dim == 256);
}

void DecodeRangeBf16ForRows(const Problem& p, const TileShape& t, int h,
                            int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  if (t.rows <= 1) {
    DecodeRangeBf16ForDim<1>(p, t, h, j_begin, j_end, w);
  } else if (t.rows <= 2) {
    DecodeRangeBf16ForDim<2>(p, t, h, j_begin, j_end, w);
  } else if (t.rows <= 4) {
    DecodeRangeBf16ForDim<4>(p, t, h, j_begin, j_end, w);
  } else {
    DecodeRangeBf16ForDim<8>(p, t, h, j_begin, j_end, w);
  }
}

template <int R, DType kType>
void DecodeRangeForDim(const Problem& p, const TileShape& t, int h,
                       int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  switch (t.d_p / 16) {
    case 4:
      DecodeRange<R, 4, kType>(p, t, h, j_begin, j_end, w);
      break;
    case 8:
      DecodeRange<R, 8, kType>(p, t, h, j_begin, j_end, w);
      break;
    default:
      DecodeRange<R, 0, kType>(p, t, h, j_begin, j_end, w);
      break;
  }
}

template <DType kType>
void DecodeRangeForRows(const Problem& p, const TileShape& t, int h,
                        int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  // Rows are padded (with zero queries) to 1, 2, 4 or 8.
  if (t.rows <= 1) {
    DecodeRangeForDim<1, kType>(p, t, h, j_begin, j_end, w);
  } else if (t.rows <= 2) {
    DecodeRangeForDim<2, kType>(p, t, h, j_begin, j_end, w);
  } else if (t.rows <= 4) {
    DecodeRangeForDim<4, kType>(p, t, h, j_begin, j_end, w);
  } else {
    DecodeRangeForDim<8, kType>(p, t, h, j_begin, j_end, w);
  }
}

// ---------------------------------------------------------------------------
// Scheduling.

// Query tiles that share each converted K/V tile, at most.
constexpr int64_t kMaxGroupTiles = 8;

// Splits of one work item's keys are at least this long.
constexpr int64_t kMinSplitKeys = 512;

void DecodeKeys(const Problem& p, const TileShape& t, int h, int64_t j_begin,
                int64_t j_end, Avx512Scratch& w);

// RunItem runs query tile `tile` of kv head h over keys [j_begin, j_end),
// leaving the unnormalized state in w.o, w.m, w.l.
void RunItem(const Problem& p, const TileShape& t, bool decode, int h,
             int64_t tile, int64_t j_begin, int64_t j_end, Avx512Scratch& w) {
  const int64_t i0 = tile * t.tokens;
  const int tokens = static_cast<int>(std::min<int64_t>(t.tokens, p.n_q - i0));
  PrepareTile(p, t, h, i0, tokens, decode, w);
  if (!decode) {
    TileRange(p, t, h, i0, tokens, j_begin, j_end, w);
    return;
  }
  DecodeKeys(p, t, h, j_begin, j_end, w);
}

// DecodeKeys continues the prepared decode rows of kv head h over keys
// [j_begin, j_end).
void DecodeKeys(const Problem& p, const TileShape& t, int h, int64_t j_begin,
                int64_t j_end, Avx512Scratch& w) {
  if (DecodeBf16Applies(p)) {
    DecodeRangeBf16ForRows(p, t, h, j_begin, j_end, w);
    return;
  }
  switch (p.kv->dtype) {
    case DType::kF16:
      DecodeRangeForRows<DType::kF16>(p, t, h, j_begin, j_end, w);
      break;
    case DType::kF32:
      DecodeRangeForRows<DType::kF32>(p, t, h, j_begin, j_end, w);
      break;
    case DType::kBf16:
      DecodeRangeForRows<DType::kBf16>(p, t, h, j_begin, j_end, w);
      break;
  }
}

// FinishItem normalizes and writes the rows of query tile `tile`, kv head h.
void FinishItem(const Problem& p, const TileShape& t, int h, int64_t tile,
                const float* o, const float* m, const float* l) {
  const int64_t i0 = tile * t.tokens;
  const int tokens = static_cast<int>(std::min<int64_t>(t.tokens, p.n_q - i0));
  for (int r = 0; r < tokens * p.group; ++r) {
    const int tok = r / p.group;
    const int head = h * p.group + r % p.group;
    FinishRow(
        o + static_cast<size_t>(r) * t.d_p, m[r], l[r], t.d,
        p.o + (i0 + tok) * p.o_stride + static_cast<int64_t>(head) * t.d,
        p.lse != nullptr ? p.lse + (i0 + tok) * p.num_heads + head : nullptr);
  }
}

// Floats of one partial result: o [rows_p][d_p], then m and l [rows_p].
size_t StateFloats(const TileShape& t) {
  return static_cast<size_t>(t.rows_p) * t.d_p +
         2 * static_cast<size_t>(t.rows_p);
}

void SaveState(const TileShape& t, const Avx512Scratch& w, float* state) {
  std::copy(w.o, w.o + static_cast<size_t>(t.rows_p) * t.d_p, state);
  std::copy(w.m, w.m + t.rows_p, state + t.rows_p * t.d_p);
  std::copy(w.l, w.l + t.rows_p, state + t.rows_p * t.d_p + t.rows_p);
}

// MergeStates sets w.o, w.m, w.l to the exact merge of `count` partial
// results over disjoint keys, state i at states + i * stride: in log2 units,
// each rescaled to the largest m.
void MergeStates(const TileShape& t, const float* states, int64_t count,
                 size_t stride, Avx512Scratch& w) {
  const size_t m_at = static_cast<size_t>(t.rows_p) * t.d_p;
  const size_t l_at = m_at + t.rows_p;
  for (int r = 0; r < t.rows; ++r) {
    float m = kNegInf;
    for (int64_t i = 0; i < count; ++i) {
      m = std::max(m, states[i * stride + m_at + r]);
    }
    float* o = w.o + static_cast<size_t>(r) * t.d_p;
    std::fill(o, o + t.d_p, 0.0f);
    float l = 0.0f;
    if (m != kNegInf) {
      for (int64_t i = 0; i < count; ++i) {
        const float* state = states + i * stride;
        const float scale = std::exp2(state[m_at + r] - m);
        if (scale == 0.0f) continue;
        l += scale * state[l_at + r];
        const float* so = state + static_cast<size_t>(r) * t.d_p;
        for (int x = 0; x < t.d_p; ++x) o[x] += scale * so[x];
      }
    }
    w.m[r] = m;
    w.l[r] = l;
  }
}

// Decode over this many keys or more walks the cache block by block.
constexpr int64_t kBlockMajorDecodeKeys = 4096;

// DecodeByBlocks is decode over a long context: each thread takes a run of
// whole KV blocks and walks it block by block, every kv head of a block
// before the next block. A block's keys and values of one layer are
// contiguous ([heads][block][dim], K then V), so each thread reads two
// sequential streams (K and V) through them, rather than each kv head's
// 1/heads of every block (measured on the benchmark shapes: reading the cache
// head by head takes about 1.7x as long as reading it block by block).
// Per-thread partial results per head merge exactly.
void DecodeByBlocks(const Problem& p, const TileShape& t, int64_t end) {
  const int heads = p.kv->num_kv_heads;
  const int64_t bs = p.kv->block_size;
  const int64_t blocks = (end + bs - 1) / bs;
  const int threads =
      static_cast<int>(std::min<int64_t>(omp_get_max_threads(), blocks));
  const size_t state_floats = StateFloats(t);
  const std::unique_ptr<float, FreeDeleter> partials =
      AllocFloats(static_cast<size_t>(threads) * heads * state_floats);
#pragma omp parallel num_threads(threads)
  {
    const int tid = omp_get_thread_num();
    const int team = omp_get_num_threads();
    const int64_t j_begin = std::min(end, blocks * tid / team * bs);
    const int64_t j_end = std::min(end, blocks * (tid + 1) / team * bs);
    std::vector<Avx512Scratch> ws;
    ws.reserve(heads);
    for (int h = 0; h < heads; ++h) {
      ws.emplace_back(t, p.bf16);
      PrepareTile(p, t, h, 0, static_cast<int>(p.n_q), /*row_major=*/true,
                  ws[h]);
      // The temporaries of a run (scores, products, bf16 probabilities) are
      // shared by the heads: less to keep in the L1 cache.
      ws[h].s = ws[0].s;
      ws[h].k = ws[0].k;
      ws[h].pb = ws[0].pb;
    }
    for (int64_t j0 = j_begin; j0 < j_end; j0 += bs) {
      for (int h = 0; h < heads; ++h) {
        DecodeKeys(p, t, h, j0, std::min(j_end, j0 + bs), ws[h]);
      }
    }
    for (int h = 0; h < heads; ++h) {
      SaveState(t, ws[h],
                partials.get() +
                    (static_cast<size_t>(h) * team + tid) * state_floats);
    }
#pragma omp barrier
#pragma omp for schedule(static)
    for (int h = 0; h < heads; ++h) {
      MergeStates(t,
                  partials.get() + static_cast<size_t>(h) * team * state_floats,
                  team, state_floats, ws[0]);
      FinishItem(p, t, h, 0, ws[0].o, ws[0].m, ws[0].l);
    }
  }
}

void AttentionAvx512(const Problem& p) {
  const bool decode = p.n_q * p.group <= kDecodeRows;
  TileShape t;
  t.tokens =
      decode ? static_cast<int>(p.n_q) : std::max(1, kTargetRows / p.group);
  t.rows = t.tokens * p.group;
  t.rows_p = (t.rows + 15) / 16 * 16;
  t.d = p.head_dim;
  t.d_p = (p.head_dim + 15) / 16 * 16;
  const int num_kv_heads = p.kv->num_kv_heads;
  const int64_t tiles = (p.n_q + t.tokens - 1) / t.tokens;
  const int64_t items = tiles * num_kv_heads;
  // Keys each tile reaches; later tiles reach more.
  auto tile_end = [&](int64_t tile) {
    return VisibleKeys(p, std::min(p.n_q, (tile + 1) * t.tokens) - 1);
  };

  if (decode && tile_end(0) >= kBlockMajorDecodeKeys) {
    DecodeByBlocks(p, t, tile_end(0));
    return;
  }

  // Too few items to occupy every thread (decode, short chunks at long
  // context): split each item's keys and merge the partial results.
  const int threads = omp_get_max_threads();
  int64_t splits = 1;
  if (items < 2 * threads) {
    splits = std::min<int64_t>((2 * threads + items - 1) / items,
                               tile_end(tiles - 1) / kMinSplitKeys);
    splits = std::max<int64_t>(splits, 1);
  }
  if (splits == 1 && !decode) {
    // Query tiles in groups of up to kMaxGroupTiles consecutive tiles of one
    // kv head, so that each K/V tile is converted once per group (keeping
    // enough groups to share among the threads).
    const int64_t group_tiles =
        std::clamp<int64_t>(items / (4 * int64_t{threads}), 1, kMaxGroupTiles);
    const int64_t groups = (tiles + group_tiles - 1) / group_tiles;
    const int64_t group_items = groups * num_kv_heads;
#pragma omp parallel if (group_items > 1)
    {
      std::vector<Avx512Scratch> ws;
      ws.reserve(group_tiles);
      for (int64_t g = 0; g < group_tiles; ++g) ws.emplace_back(t, p.bf16);
      GroupTile group[kMaxGroupTiles];
      // Later query tiles see more keys: hand them out first.
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < group_items; ++item) {
        const int64_t first = (groups - 1 - item / num_kv_heads) * group_tiles;
        const int h = static_cast<int>(item % num_kv_heads);
        const int n = static_cast<int>(std::min(group_tiles, tiles - first));
        for (int g = 0; g < n; ++g) {
          const int64_t i0 = (first + g) * t.tokens;
          const int tokens =
              static_cast<int>(std::min<int64_t>(t.tokens, p.n_q - i0));
          PrepareTile(p, t, h, i0, tokens, /*row_major=*/false, ws[g]);
          group[g] = GroupTile{&ws[g], i0, tokens, tile_end(first + g)};
        }
        TileGroupRange(p, t, h, group, n, 0, ws[0]);
        for (int g = 0; g < n; ++g) {
          FinishItem(p, t, h, first + g, ws[g].o, ws[g].m, ws[g].l);
        }
      }
    }
    return;
  }
  if (splits == 1) {
#pragma omp parallel if (items > 1)
    {
      Avx512Scratch w(t, p.bf16);
      // Later query tiles see more keys: hand them out first.
#pragma omp for schedule(dynamic, 1)
      for (int64_t item = 0; item < items; ++item) {
        const int64_t tile = tiles - 1 - item / num_kv_heads;
        const int h = static_cast<int>(item % num_kv_heads);
        RunItem(p, t, decode, h, tile, 0, tile_end(tile), w);
        FinishItem(p, t, h, tile, w.o, w.m, w.l);
      }
    }
    return;
  }

  // Partial state of each (item, split).
  const size_t state_floats = StateFloats(t);
  const std::unique_ptr<float, FreeDeleter> partials =
      AllocFloats(static_cast<size_t>(items * splits) * state_floats);
#pragma omp parallel
  {
    Avx512Scratch w(t, p.bf16);
#pragma omp for schedule(dynamic, 1)
    for (int64_t unit = 0; unit < items * splits; ++unit) {
      const int64_t item = unit / splits;
      const int64_t tile = item / num_kv_heads;
      const int h = static_cast<int>(item % num_kv_heads);
      // Split boundaries are multiples of 16 keys.
      const int64_t end = tile_end(tile);
      const int64_t chunk = ((end + splits - 1) / splits + 15) / 16 * 16;
      const int64_t j_begin = std::min(end, (unit % splits) * chunk);
      const int64_t j_end = std::min(end, j_begin + chunk);
      RunItem(p, t, decode, h, tile, j_begin, j_end, w);
      SaveState(t, w, partials.get() + unit * state_floats);
    }
#pragma omp for schedule(static)
    for (int64_t item = 0; item < items; ++item) {
      MergeStates(t, partials.get() + item * splits * state_floats, splits,
                  state_floats, w);
      FinishItem(p, t, static_cast<int>(item % num_kv_heads),
                 item / num_kv_heads, w.o, w.m, w.l);
    }
  }
}

}  // namespace

absl::Status FlashAttention(const float* q, int64_t n_q, int64_t q_stride,
                            const PagedKv& kv, const AttentionParams& params,
                            float* o, int64_t o_stride, float* lse) {
  const int d = kv.head_dim;
  if (kv.num_kv_heads <= 0 || params.num_heads <= 0 ||
      params.num_heads % kv.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FlashAttention: num_heads ", params.num_heads,
        " must be a positive multiple of num_kv_heads ", kv.num_kv_heads));
  }
  if (d < 1 || d > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FlashAttention: head_dim ", d, " is outside 1..", kMaxHeadDim));
  }
  if (n_q < 0 || kv.num_tokens < 0 || kv.block_size <= 0 ||
      kv.num_tokens > std::numeric_limits<int32_t>::max() ||
      q_stride < static_cast<int64_t>(params.num_heads) * d ||
      o_stride < static_cast<int64_t>(params.num_heads) * d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "FlashAttention: bad sizes: n_q=", n_q, " n_kv=", kv.num_tokens,
        " block_size=", kv.block_size, " q_stride=", q_stride, " o_stride=",
        o_stride, " (num_heads * head_dim = ", params.num_heads * d, ")"));
  }
  if (params.compute != DType::kF32 && params.compute != DType::kBf16) {
    return absl::InvalidArgumentError(
        absl::StrCat("FlashAttention: compute type ", DTypeName(params.compute),
                     " is not f32 or bf16"));
  }
  if (n_q == 0) return absl::OkStatus();
  if (q == nullptr || o == nullptr ||
      (kv.num_tokens > 0 &&
       (kv.k_blocks == nullptr || kv.v_blocks == nullptr))) {
    return absl::InvalidArgumentError("FlashAttention: null q, o or blocks");
  }
  Problem p;
  p.q = q;
  p.n_q = n_q;
  p.q_stride = q_stride;
  p.kv = &kv;
  p.num_heads = params.num_heads;
  p.group = params.num_heads / kv.num_kv_heads;
  p.head_dim = d;
  p.q_offset = params.q_start_pos - kv.start_pos;
  p.causal = params.causal;
  p.scale = params.scale != 0.0f ? params.scale
                                 : 1.0f / std::sqrt(static_cast<float>(d));
  p.o = o;
  p.o_stride = o_stride;
  p.lse = lse;
  p.bf16 =
      params.compute == DType::kBf16 && ActiveCpuIsa() >= CpuIsa::kAvx512Bf16;
  if (ActiveCpuIsa() >= CpuIsa::kAvx512) {
    AttentionAvx512(p);
  } else {
    AttentionScalar(p);
  }
  return absl::OkStatus();
}

}  // namespace longctx::kernels
