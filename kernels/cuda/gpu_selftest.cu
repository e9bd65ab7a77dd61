// gpu_selftest: checks every CUDA kernel of kernels/cuda against a
// double-precision CPU reference on random inputs of awkward sizes, and that
// cuBLAS works. The references here restate, in plain C++, the semantics of
// the CPU kernels (kernels/attention.h, lse_merge.h, rope.h, swiglu.h,
// embedding.h, rms_norm.h), because this program must build on a GPU machine
// that has CUDA but none of the Debian libraries the CPU kernels need.
//
// Prints one line per check ("PASS name: detail" or "FAIL name: detail") and
// "N passed, N failed"; exits non-zero on any failure or when no GPU is
// present. Depends on CUDA, cuBLAS and the C++ standard library only; built by
// the CMakeLists.txt beside it (see run_gpu_selftests.sh) and by Bazel with
// --config=cuda.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cuda/attention_cuda.h"
#include "kernels/cuda/embedding_cuda.h"
#include "kernels/cuda/lse_merge_cuda.h"
#include "kernels/cuda/rms_norm_cuda.h"
#include "kernels/cuda/rope_cuda.h"
#include "kernels/cuda/selftest_util.h"
#include "kernels/cuda/swiglu_cuda.h"
#include "kernels/dtype.h"

namespace {

using namespace longctx::kernels::cuda::selftest;  // NOLINT: test helpers.

// ---------------------------------------------------------------------------
// Flash attention over a paged KV cache.

struct AttentionCase {
  int head_dim;
  int num_heads;
  int num_kv_heads;
  int64_t n_q;
  int64_t n_kv;
  int block_size;
  bool causal;
  int64_t q_start_pos;
  int64_t kv_start_pos;
  DType dtype;
  float scale;  // 0: 1 / sqrt(head_dim).
  int pad;      // Extra floats per token in q's and o's strides.
  bool with_lse;
  float q_gain;  // Spread of q: larger makes the softmax peakier.
};

// Tolerance 1e-4 absolute on o (values in [-1, 1]) and on lse: fp32 dot
// products and exp2 against a double reference stay near 1e-6; one key too
// many or too few among a few thousand moves o or lse by more than 1e-4.
// Rows that see no key must be exactly o = 0, lse = -inf; padding of o must
// stay untouched, and block slots past the last key hold NaN, so reading them
// shows.
void CheckAttention(const AttentionCase& c, std::mt19937& rng) {
  const std::string name = Format(
      "flash_attention d=%d heads=%d/%d n_q=%lld n_kv=%lld block=%d %s "
      "q_pos=%lld kv_pos=%lld %s",
      c.head_dim, c.num_heads, c.num_kv_heads, static_cast<long long>(c.n_q),
      static_cast<long long>(c.n_kv), c.block_size,
      c.causal ? "causal" : "full", static_cast<long long>(c.q_start_pos),
      static_cast<long long>(c.kv_start_pos), DTypeLabel(c.dtype));
  const int d = c.head_dim;
  const int H = c.num_heads;
  const int KH = c.num_kv_heads;
  const int G = H / KH;
  const int64_t q_stride = static_cast<int64_t>(H) * d + c.pad;
  std::normal_distribution<float> normal(0.f, 1.f);
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);

  std::vector<float> q(static_cast<size_t>(c.n_q * q_stride), kNaN);
  for (int64_t i = 0; i < c.n_q; ++i) {
    for (int x = 0; x < H * d; ++x)
      q[i * q_stride + x] = normal(rng) * c.q_gain;
  }
  // Keys and values: the exact values the kernel sees (after rounding to the
  // cache type) for the reference, and a pool of blocks in shuffled order
  // filled with NaN where no token is.
  const int64_t n_blocks = (c.n_kv + c.block_size - 1) / c.block_size;
  const int64_t pool_blocks = n_blocks + 2;
  const size_t block_elems = static_cast<size_t>(KH) * c.block_size * d;
  const size_t block_bytes = block_elems * ElementSize(c.dtype);
  std::vector<int64_t> slot_of_block(static_cast<size_t>(pool_blocks));
  std::iota(slot_of_block.begin(), slot_of_block.end(), 0);
  std::shuffle(slot_of_block.begin(), slot_of_block.end(), rng);
  std::vector<uint8_t> k_pool(pool_blocks * block_bytes);
  std::vector<uint8_t> v_pool(pool_blocks * block_bytes);
  for (size_t e = 0; e < pool_blocks * block_elems; ++e) {
    PutElement(c.dtype, k_pool.data(), e, NaNBits(c.dtype));
    PutElement(c.dtype, v_pool.data(), e, NaNBits(c.dtype));
  }
  // k_ref[(t * KH + h) * d + x]
  std::vector<float> k_ref(static_cast<size_t>(c.n_kv) * KH * d);
  std::vector<float> v_ref(k_ref.size());
  for (int64_t t = 0; t < c.n_kv; ++t) {
    const int64_t block = t / c.block_size;
    const int64_t slot = t % c.block_size;
    const size_t base = slot_of_block[block] * block_elems;
    for (int h = 0; h < KH; ++h) {
      for (int x = 0; x < d; ++x) {
        const size_t in_block =
            (h * static_cast<size_t>(c.block_size) + slot) * d + x;
        const size_t ref = (t * KH + h) * static_cast<size_t>(d) + x;
        uint32_t bits = 0;
        k_ref[ref] = StoreAs(c.dtype, uniform(rng), &bits);
        PutElement(c.dtype, k_pool.data(), base + in_block, bits);
        v_ref[ref] = StoreAs(c.dtype, uniform(rng), &bits);
        PutElement(c.dtype, v_pool.data(), base + in_block, bits);
      }
    }
  }

  DeviceArray<float> dq;
  DeviceArray<float> dout;
  DeviceArray<float> dlse;
  DeviceArray<uint8_t> dk_pool;
  DeviceArray<uint8_t> dv_pool;
  DeviceArray<const void*> dk_table;
  DeviceArray<const void*> dv_table;
  CHECK_CUDA(name, dq.Upload(q));
  CHECK_CUDA(name, dk_pool.Upload(k_pool));
  CHECK_CUDA(name, dv_pool.Upload(v_pool));
  std::vector<const void*> k_table(static_cast<size_t>(n_blocks));
  std::vector<const void*> v_table(static_cast<size_t>(n_blocks));
  for (int64_t b = 0; b < n_blocks; ++b) {
    k_table[b] = dk_pool.get() + slot_of_block[b] * block_bytes;
    v_table[b] = dv_pool.get() + slot_of_block[b] * block_bytes;
  }
  CHECK_CUDA(name, dk_table.Upload(k_table));
  CHECK_CUDA(name, dv_table.Upload(v_table));
  std::vector<float> out(q.size(), kNaN);  // NaN also in the padding.
  CHECK_CUDA(name, dout.Upload(out));
  std::vector<float> lse(static_cast<size_t>(c.n_q * H), kNaN);
  CHECK_CUDA(name, dlse.Upload(lse));

  kc::PagedKv kv;
  kv.k_blocks = c.n_kv > 0 ? dk_table.get() : nullptr;
  kv.v_blocks = c.n_kv > 0 ? dv_table.get() : nullptr;
  kv.dtype = c.dtype;
  kv.block_size = c.block_size;
  kv.num_kv_heads = KH;
  kv.head_dim = d;
  kv.num_tokens = c.n_kv;
  kv.start_pos = c.kv_start_pos;
  kc::AttentionParams params;
  params.num_heads = H;
  params.q_start_pos = c.q_start_pos;
  params.causal = c.causal;
  params.scale = c.scale;
  CHECK_LAUNCH(name, kc::FlashAttention(dq.get(), c.n_q, q_stride, kv, params,
                                        dout.get(), q_stride,
                                        c.with_lse ? dlse.get() : nullptr, 0));
  CHECK_CUDA(name, dout.Download(&out));
  CHECK_CUDA(name, dlse.Download(&lse));

  const double scale =
      c.scale != 0.f ? c.scale : 1.0 / std::sqrt(static_cast<double>(d));
  Worst o_err;
  Worst lse_err;
  int64_t empty_rows = 0;
  bool exact_empty = true;
  bool padding_kept = true;
  bool lse_untouched = true;
  std::vector<double> s(static_cast<size_t>(c.n_kv));
  for (int64_t i = 0; i < c.n_q; ++i) {
    int64_t visible = c.n_kv;
    if (c.causal) {
      visible = std::clamp<int64_t>(c.q_start_pos - c.kv_start_pos + i + 1, 0,
                                    c.n_kv);
    }
    for (int h = 0; h < H; ++h) {
      const int kh = h / G;
      const float* qh = q.data() + i * q_stride + static_cast<int64_t>(h) * d;
      const float* oh = out.data() + i * q_stride + static_cast<int64_t>(h) * d;
      const float got_lse = lse[i * H + h];
      if (visible == 0) {
        ++empty_rows;
        for (int x = 0; x < d; ++x) exact_empty = exact_empty && oh[x] == 0.f;
        if (c.with_lse) exact_empty = exact_empty && got_lse == -INFINITY;
        continue;
      }
      double high = -kInf;
      for (int64_t j = 0; j < visible; ++j) {
        const float* kj = k_ref.data() + (j * KH + kh) * static_cast<size_t>(d);
        double dot = 0;
        for (int x = 0; x < d; ++x) dot += static_cast<double>(qh[x]) * kj[x];
        s[j] = scale * dot;
        high = std::max(high, s[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < visible; ++j) sum += std::exp(s[j] - high);
      const double ref_lse = high + std::log(sum);
      for (int x = 0; x < d; ++x) {
        double ref = 0;
        for (int64_t j = 0; j < visible; ++j) {
          ref += std::exp(s[j] - ref_lse) *
                 v_ref[(j * KH + kh) * static_cast<size_t>(d) + x];
        }
        o_err.Add(std::fabs(ref - oh[x]));
      }
      if (c.with_lse) lse_err.Add(std::fabs(ref_lse - got_lse));
    }
    for (int x = H * d; x < q_stride; ++x) {
      padding_kept = padding_kept && std::isnan(out[i * q_stride + x]);
    }
  }
  if (!c.with_lse) {
    for (float v : lse) lse_untouched = lse_untouched && std::isnan(v);
  }
  const bool ok = o_err.value <= 1e-4 && lse_err.value <= 1e-4 && exact_empty &&
                  padding_kept && lse_untouched;
  Report(name, ok,
         Format("max |o err| %.2e, max |lse err| %.2e (tol 1e-4)%s; %lld "
                "rows see no key%s%s%s",
                o_err.value, lse_err.value, c.with_lse ? "" : " [no lse]",
                static_cast<long long>(empty_rows),
                exact_empty ? "" : " and are NOT o=0/lse=-inf",
                padding_kept ? "" : "; o padding was written",
                lse_untouched ? "" : "; lse written though null"));
}

// Bad shapes are refused before any launch.
void CheckAttentionRejectsBadShapes() {
  const std::string name = "flash_attention rejects bad shapes";
  kc::PagedKv kv;
  kv.num_kv_heads = 3;
  kv.head_dim = 64;
  kv.num_tokens = 0;
  kc::AttentionParams params;
  params.num_heads = 4;                        // Not a multiple of 3.
  float* fake = reinterpret_cast<float*>(16);  // Never dereferenced.
  const cudaError_t not_multiple =
      kc::FlashAttention(fake, 1, 4 * 64, kv, params, fake, 4 * 64, nullptr, 0);
  params.num_heads = 3;
  kv.head_dim = 257;
  const cudaError_t too_wide = kc::FlashAttention(fake, 1, 3 * 257, kv, params,
                                                  fake, 3 * 257, nullptr, 0);
  kv.head_dim = 64;
  const cudaError_t short_stride = kc::FlashAttention(
      fake, 1, 3 * 64 - 1, kv, params, fake, 3 * 64, nullptr, 0);
  const cudaError_t sticky = cudaGetLastError();
  const bool ok = not_multiple == cudaErrorInvalidValue &&
                  too_wide == cudaErrorInvalidValue &&
                  short_stride == cudaErrorInvalidValue &&
                  sticky == cudaSuccess;
  Report(name, ok, "num_heads % num_kv_heads, head_dim 257, short q stride");
}

// ---------------------------------------------------------------------------
// LSE merge.

// Tolerance 1e-5 absolute on o (values in [-1, 1]) and lse: a handful of fp32
// operations against double. Rows where one or both partials are empty are
// checked exactly.
void CheckMerge(int64_t n_q, int num_heads, int head_dim, int pad,
                std::mt19937& rng) {
  const std::string name =
      Format("lse_merge n_q=%lld heads=%d d=%d", static_cast<long long>(n_q),
             num_heads, head_dim);
  const int64_t stride = static_cast<int64_t>(num_heads) * head_dim + pad;
  const int64_t rows = n_q * num_heads;
  std::uniform_real_distribution<float> uniform(-1.f, 1.f);
  std::uniform_real_distribution<float> lse_dist(-30.f, 30.f);
  std::vector<float> oa(static_cast<size_t>(n_q * stride), kNaN);
  std::vector<float> ob(oa.size(), kNaN);
  std::vector<float> la(static_cast<size_t>(rows));
  std::vector<float> lb(la.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / num_heads;
    const int64_t h = r % num_heads;
    // Every fourth row: a empty; every fifth: b empty; some rows both; some
    // rows with lse far apart (one weight underflows).
    la[r] = r % 4 == 1 ? -INFINITY : lse_dist(rng);
    lb[r] = r % 5 == 2 ? -INFINITY : lse_dist(rng);
    if (r % 7 == 3) lb[r] = la[r] + 120.f;
    for (int x = 0; x < head_dim; ++x) {
      oa[i * stride + h * head_dim + x] =
          la[r] == -INFINITY ? 0.f : uniform(rng);
      ob[i * stride + h * head_dim + x] =
          lb[r] == -INFINITY ? 0.f : uniform(rng);
    }
  }
  DeviceArray<float> doa, dob, dla, dlb;
  CHECK_CUDA(name, doa.Upload(oa));
  CHECK_CUDA(name, dob.Upload(ob));
  CHECK_CUDA(name, dla.Upload(la));
  CHECK_CUDA(name, dlb.Upload(lb));
  CHECK_LAUNCH(
      name, kc::MergeAttention(doa.get(), stride, dla.get(), dob.get(), stride,
                               dlb.get(), n_q, num_heads, head_dim, 0));
  std::vector<float> got_o, got_l;
  CHECK_CUDA(name, doa.Download(&got_o));
  CHECK_CUDA(name, dla.Download(&got_l));
  Worst err;
  bool exact = true;
  bool padding_kept = true;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = r / num_heads;
    const int64_t h = r % num_heads;
    const size_t at = i * stride + h * head_dim;
    if (lb[r] == -INFINITY || la[r] == -INFINITY) {
      const bool take_b = la[r] == -INFINITY;
      exact = exact && got_l[r] == (take_b ? lb[r] : la[r]);
      for (int x = 0; x < head_dim; ++x) {
        exact = exact && got_o[at + x] == (take_b ? ob[at + x] : oa[at + x]);
      }
      continue;
    }
    const double high = std::max<double>(la[r], lb[r]);
    const double wa = std::exp(la[r] - high);
    const double wb = std::exp(lb[r] - high);
    const double lse = high + std::log(wa + wb);
    err.Add(std::fabs(lse - got_l[r]));
    for (int x = 0; x < head_dim; ++x) {
      const double ref = (wa * oa[at + x] + wb * ob[at + x]) / (wa + wb);
      err.Add(std::fabs(ref - got_o[at + x]));
    }
  }
  for (int64_t i = 0; i < n_q; ++i) {
    for (int64_t x = static_cast<int64_t>(num_heads) * head_dim; x < stride;
         ++x) {
      padding_kept = padding_kept && std::isnan(got_o[i * stride + x]);
    }
  }
  Report(name, err.value <= 1e-5 && exact && padding_kept,
         Format("max err %.2e (tol 1e-5)%s%s", err.value,
                exact ? "" : "; empty-partial rows NOT exact",
                padding_kept ? "" : "; padding written"));
}

// ---------------------------------------------------------------------------
// RoPE.

// The inverse frequencies of kernels/rope.h's ComputeRopeInvFreq (Hugging
// Face's, optionally with Llama 3.1 scaling), restated.
std::vector<float> InvFreq(int head_dim, double theta, bool llama3) {
  constexpr double kPi = 3.14159265358979323846;
  const double factor = 8.0, low = 1.0, high = 4.0, old_len = 8192.0;
  std::vector<float> out(static_cast<size_t>(head_dim / 2));
  for (int i = 0; i < head_dim / 2; ++i) {
    double f = std::pow(theta, -2.0 * i / head_dim);
    if (llama3) {
      const double wavelen = 2 * kPi / f;
      if (wavelen > old_len / low) {
        f /= factor;
      } else if (wavelen >= old_len / high) {
        const double smooth = (old_len / wavelen - low) / (high - low);
        f = (1 - smooth) * f / factor + smooth * f;
      }
    }
    out[i] = static_cast<float>(f);
  }
  return out;
}

// Tolerance: 1e-5 of |x_a| + |x_b| per rotated pair (fp32 rotation by
// fp32-rounded sine and cosine of a double angle, against double).
void CheckRope(int head_dim, int q_heads, int k_heads, int64_t n_tokens,
               bool llama3, bool with_k, std::mt19937& rng) {
  const std::string name =
      Format("rope d=%d q_heads=%d k_heads=%d tokens=%lld%s%s", head_dim,
             q_heads, with_k ? k_heads : 0, static_cast<long long>(n_tokens),
             llama3 ? " llama3" : "", with_k ? "" : " (q only)");
  const std::vector<float> inv_freq =
      InvFreq(head_dim, llama3 ? 500000.0 : 10000.0, llama3);
  std::uniform_real_distribution<float> uniform(-2.f, 2.f);
  std::uniform_int_distribution<int32_t> far(0, 4 << 20);
  const int64_t q_stride = static_cast<int64_t>(q_heads) * head_dim + 3;
  const int64_t k_stride = static_cast<int64_t>(k_heads) * head_dim + 1;
  std::vector<int32_t> positions(static_cast<size_t>(n_tokens));
  for (int64_t t = 0; t < n_tokens; ++t) {
    positions[t] = t % 3 == 0 ? static_cast<int32_t>(t) : far(rng);
  }
  std::vector<float> q(static_cast<size_t>(n_tokens * q_stride));
  std::vector<float> k(static_cast<size_t>(n_tokens * k_stride));
  for (float& v : q) v = uniform(rng);
  for (float& v : k) v = uniform(rng);
  DeviceArray<float> dfreq, dq, dk;
  DeviceArray<int32_t> dpos;
  CHECK_CUDA(name, dfreq.Upload(inv_freq));
  CHECK_CUDA(name, dpos.Upload(positions));
  CHECK_CUDA(name, dq.Upload(q));
  CHECK_CUDA(name, dk.Upload(k));
  CHECK_LAUNCH(
      name, kc::ApplyRope(dfreq.get(), head_dim, dpos.get(), n_tokens, dq.get(),
                          q_stride, q_heads, with_k ? dk.get() : nullptr,
                          k_stride, k_heads, 0));
  std::vector<float> got_q, got_k;
  CHECK_CUDA(name, dq.Download(&got_q));
  CHECK_CUDA(name, dk.Download(&got_k));
  const int half = head_dim / 2;
  Worst err;
  bool untouched = true;  // Padding, and k when it is not rotated.
  auto check = [&](const std::vector<float>& in, const std::vector<float>& got,
                   int64_t stride, int heads, bool rotated) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int h = 0; h < heads; ++h) {
        const size_t base = t * stride + static_cast<size_t>(h) * head_dim;
        for (int i = 0; i < half; ++i) {
          const double xa = in[base + i];
          const double xb = in[base + i + half];
          double ya = xa;
          double yb = xb;
          if (rotated) {
            const double angle = static_cast<double>(positions[t]) *
                                 static_cast<double>(inv_freq[i]);
            ya = xa * std::cos(angle) - xb * std::sin(angle);
            yb = xb * std::cos(angle) + xa * std::sin(angle);
          }
          const double norm = std::fabs(xa) + std::fabs(xb) + 1e-30;
          err.Add(std::fabs(ya - got[base + i]) / norm);
          err.Add(std::fabs(yb - got[base + i + half]) / norm);
        }
      }
      for (int64_t x = static_cast<int64_t>(heads) * head_dim; x < stride;
           ++x) {
        untouched = untouched && got[t * stride + x] == in[t * stride + x];
      }
    }
  };
  check(q, got_q, q_stride, q_heads, true);
  check(k, got_k, k_stride, k_heads, with_k);
  Report(
      name, err.value <= 1e-5 && untouched,
      Format("max err %.2e of |x_a|+|x_b| (tol 1e-5), positions up to %d%s",
             err.value, *std::max_element(positions.begin(), positions.end()),
             untouched ? "" : "; padding or un-rotated k changed"));
}

// ---------------------------------------------------------------------------
// SwiGLU.

// Tolerance 1e-5 relative (expf, a division and a product in fp32).
void CheckSwiGlu(int64_t rows, int64_t dim, bool fused_in_place,
                 std::mt19937& rng) {
  const std::string name = Format(
      "swiglu rows=%lld dim=%lld%s", static_cast<long long>(rows),
      static_cast<long long>(dim), fused_in_place ? " fused in place" : "");
  std::uniform_real_distribution<float> uniform(-20.f, 20.f);
  std::vector<float> gate_up(static_cast<size_t>(rows * 2 * dim));
  for (float& v : gate_up) v = uniform(rng);
  DeviceArray<float> dgu, dout;
  CHECK_CUDA(name, dgu.Upload(gate_up));
  const int64_t out_stride = fused_in_place ? 2 * dim : dim + 5;
  CHECK_CUDA(name, dout.Alloc(static_cast<size_t>(rows * out_stride)));
  float* out = fused_in_place ? dgu.get() : dout.get();
  if (fused_in_place) {
    CHECK_LAUNCH(name,
                 kc::SwiGluFused(dgu.get(), rows, dim, out, out_stride, 0));
  } else {
    // Separate operands with their own strides: gate = first half, up =
    // second half of the fused rows.
    CHECK_LAUNCH(name, kc::SwiGlu(dgu.get(), 2 * dim, dgu.get() + dim, 2 * dim,
                                  rows, dim, out, out_stride, 0));
  }
  std::vector<float> got;
  CHECK_CUDA(name, (fused_in_place ? dgu : dout).Download(&got));
  Worst err;
  bool up_kept = true;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      const double g = gate_up[r * 2 * dim + i];
      const double u = gate_up[r * 2 * dim + dim + i];
      const double ref = g / (1.0 + std::exp(-g)) * u;
      const double value = got[r * out_stride + i];
      err.Add(std::fabs(ref - value) / (std::fabs(ref) + 1e-30));
      if (fused_in_place) {
        up_kept = up_kept && got[r * out_stride + dim + i] ==
                                 gate_up[r * 2 * dim + dim + i];
      }
    }
  }
  Report(name, err.value <= 1e-5 && up_kept,
         Format("max rel err %.2e (tol 1e-5)%s", err.value,
                up_kept ? "" : "; the up half was changed"));
}

// ---------------------------------------------------------------------------
// Embedding lookup.

// Exact: conversions to fp32 are exact. A bad id must leave out untouched and
// name the first bad index.
void CheckEmbedding(DType dtype, int64_t vocab, int64_t dim, int64_t n,
                    std::mt19937& rng) {
  const std::string name =
      Format("embedding %s vocab=%lld dim=%lld n=%lld", DTypeLabel(dtype),
             static_cast<long long>(vocab), static_cast<long long>(dim),
             static_cast<long long>(n));
  std::uniform_real_distribution<float> uniform(-3.f, 3.f);
  std::uniform_int_distribution<int32_t> pick(0,
                                              static_cast<int32_t>(vocab - 1));
  std::vector<uint8_t> table(static_cast<size_t>(vocab * dim) *
                             ElementSize(dtype));
  std::vector<float> ref(static_cast<size_t>(vocab * dim));
  for (size_t e = 0; e < ref.size(); ++e) {
    uint32_t bits = 0;
    ref[e] = StoreAs(dtype, uniform(rng), &bits);
    PutElement(dtype, table.data(), e, bits);
  }
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) id = pick(rng);
  ids[0] = 0;
  ids[n - 1] = static_cast<int32_t>(vocab - 1);
  const int64_t out_stride = dim + 3;
  std::vector<float> out(static_cast<size_t>(n * out_stride), kNaN);
  DeviceArray<uint8_t> dtable;
  DeviceArray<int32_t> dids;
  DeviceArray<float> dout;
  DeviceArray<int64_t> dbad;
  CHECK_CUDA(name, dtable.Upload(table));
  CHECK_CUDA(name, dids.Upload(ids));
  CHECK_CUDA(name, dout.Upload(out));
  CHECK_CUDA(name, dbad.Alloc(1));
  CHECK_LAUNCH(
      name, kc::EmbeddingLookup(dtable.get(), dtype, vocab, dim, dids.get(), n,
                                dout.get(), out_stride, dbad.get(), 0));
  std::vector<float> got;
  std::vector<int64_t> bad;
  CHECK_CUDA(name, dout.Download(&got));
  CHECK_CUDA(name, dbad.Download(&bad));
  int64_t mismatches = 0;
  bool padding_kept = true;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t x = 0; x < dim; ++x) {
      if (got[i * out_stride + x] != ref[ids[i] * dim + x]) ++mismatches;
    }
    for (int64_t x = dim; x < out_stride; ++x) {
      padding_kept = padding_kept && std::isnan(got[i * out_stride + x]);
    }
  }
  // Now with ids out of range at indices 5 (vocab) and 9 (-1): nothing
  // written, first_bad = 5.
  std::vector<int32_t> bad_ids = ids;
  bad_ids[9] = -1;
  bad_ids[5] = static_cast<int32_t>(vocab);
  DeviceArray<int32_t> dbad_ids;
  DeviceArray<float> dfresh;
  std::vector<float> fresh(out.size(), kNaN);
  CHECK_CUDA(name, dbad_ids.Upload(bad_ids));
  CHECK_CUDA(name, dfresh.Upload(fresh));
  CHECK_LAUNCH(
      name, kc::EmbeddingLookup(dtable.get(), dtype, vocab, dim, dbad_ids.get(),
                                n, dfresh.get(), out_stride, dbad.get(), 0));
  std::vector<int64_t> bad_after;
  CHECK_CUDA(name, dfresh.Download(&fresh));
  CHECK_CUDA(name, dbad.Download(&bad_after));
  bool untouched = true;
  for (float v : fresh) untouched = untouched && std::isnan(v);
  const bool ok = mismatches == 0 && padding_kept && bad[0] == n &&
                  bad_after[0] == 5 && untouched;
  Report(
      name, ok,
      Format("%lld mismatches (exact), first_bad %lld (want %lld); with bad "
             "ids first_bad %lld (want 5), out %s",
             static_cast<long long>(mismatches), static_cast<long long>(bad[0]),
             static_cast<long long>(n), static_cast<long long>(bad_after[0]),
             untouched ? "untouched" : "WRITTEN"));
}

// ---------------------------------------------------------------------------
// RMSNorm and AddRmsNorm.

// Tolerance 1e-5 relative (fp32 sum of squares over at most a few thousand
// terms, against double).
void CheckRmsNorm(int64_t rows, int64_t dim, bool add, std::mt19937& rng) {
  const std::string name =
      Format("%s rows=%lld dim=%lld", add ? "add_rms_norm" : "rms_norm",
             static_cast<long long>(rows), static_cast<long long>(dim));
  std::normal_distribution<float> normal(0.f, 1.f);
  const int64_t x_stride = dim + 7;
  const int64_t d_stride = dim + 2;
  std::vector<float> x(static_cast<size_t>(rows * x_stride), kNaN);
  std::vector<float> delta(static_cast<size_t>(rows * d_stride), kNaN);
  std::vector<float> w(static_cast<size_t>(dim));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      x[r * x_stride + i] = normal(rng) * 3.f;
      delta[r * d_stride + i] = normal(rng);
    }
  }
  for (float& v : w) v = 1.f + 0.1f * normal(rng);
  const float eps = 1e-5f;
  DeviceArray<float> dx, dd, dw, dy;
  CHECK_CUDA(name, dx.Upload(x));
  CHECK_CUDA(name, dd.Upload(delta));
  CHECK_CUDA(name, dw.Upload(w));
  // RmsNorm writes a separate y (stride dim); AddRmsNorm writes y over delta.
  if (add) {
    CHECK_LAUNCH(
        name, kc::AddRmsNorm(dx.get(), x_stride, dd.get(), d_stride, dw.get(),
                             rows, dim, eps, dd.get(), d_stride, 0));
  } else {
    CHECK_CUDA(name, dy.Alloc(static_cast<size_t>(rows * dim)));
    CHECK_LAUNCH(name, kc::RmsNorm(dx.get(), x_stride, dw.get(), rows, dim, eps,
                                   dy.get(), dim, 0));
  }
  std::vector<float> got_x, got_y;
  CHECK_CUDA(name, dx.Download(&got_x));
  CHECK_CUDA(name, (add ? dd : dy).Download(&got_y));
  const int64_t y_stride = add ? d_stride : dim;
  Worst err;
  bool residual_ok = true;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<double> v(static_cast<size_t>(dim));
    double ss = 0;
    for (int64_t i = 0; i < dim; ++i) {
      const float sum = add ? x[r * x_stride + i] + delta[r * d_stride + i]
                            : x[r * x_stride + i];
      if (add) residual_ok = residual_ok && got_x[r * x_stride + i] == sum;
      v[i] = sum;
      ss += v[i] * v[i];
    }
    const double scale = 1.0 / std::sqrt(ss / dim + eps);
    for (int64_t i = 0; i < dim; ++i) {
      const double ref = v[i] * scale * w[i];
      err.Add(std::fabs(ref - got_y[r * y_stride + i]) /
              (std::fabs(ref) + 1e-3));
    }
  }
  Report(name, err.value <= 1e-5 && residual_ok,
         Format("max rel err %.2e (tol 1e-5)%s", err.value,
                residual_ok ? "" : "; residual is not x + delta"));
}

// ---------------------------------------------------------------------------
// cuBLAS.

// SGEMM on an awkward shape against a double reference; tolerance 1e-4 of
// sqrt(K) (fp32 accumulation; TF32 is not enabled).
void CheckCublas(std::mt19937& rng) {
  const std::string name = "cublas";
  const int m = 33, n = 45, k = 77;
  std::uniform_real_distribution<float> uni(-1.f, 1.f);
  std::vector<float> a(m * k), b(k * n), c;
  for (float& v : a) v = uni(rng);
  for (float& v : b) v = uni(rng);
  DeviceArray<float> da, db, dc;
  CHECK_CUDA(name, da.Upload(a));
  CHECK_CUDA(name, db.Upload(b));
  CHECK_CUDA(name, dc.Alloc(static_cast<size_t>(m) * n));
  cublasHandle_t handle;
  if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    Report(name, false, "cublasCreate failed");
    return;
  }
  // Column-major: C(m x n) = A(m x k) * B(k x n) with row-major data means
  // computing C^T = B^T A^T.
  const float alpha = 1.f, beta = 0.f;
  const cublasStatus_t st =
      cublasSgemm(handle, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &alpha, db.get(),
                  n, da.get(), k, &beta, dc.get(), n);
  cublasDestroy(handle);
  CHECK_CUDA(name, cudaDeviceSynchronize());
  CHECK_CUDA(name, dc.Download(&c));
  Worst err;
  for (int i = 0; i < m; ++i) {
    for (int j = 0; j < n; ++j) {
      double ref = 0;
      for (int p = 0; p < k; ++p) ref += double(a[i * k + p]) * b[p * n + j];
      err.Add(std::fabs(ref - c[i * n + j]) / std::sqrt(double(k)));
    }
  }
  Report(name, st == CUBLAS_STATUS_SUCCESS && err.value < 1e-4,
         Format("sgemm %dx%dx%d max err %.2e (tol 1e-4)", m, n, k, err.value));
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    std::printf("no CUDA device (%s): nothing to check\n0 passed, 1 failed\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return 1;
  }
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  std::printf("device 0: %s, sm_%d%d, %d GPU(s)\n", prop.name, prop.major,
              prop.minor, devices);
  std::mt19937 rng(42);

  // Flash attention: head_dim 1/12/64/128/256, GQA and MQA, causal and not,
  // query and key start positions (including rows that see no key), n not a
  // multiple of the tiles or blocks, decode, an empty cache, each KV type.
  //   d  H  KH n_q  n_kv  blk causal q_pos kv_pos dtype scale pad lse gain
  const AttentionCase attention_cases[] = {
      {64, 8, 2, 37, 150, 16, true, 113, 0, DType::kF16, 0.f, 5, true, 1.f},
      {128, 4, 4, 1, 1000, 256, true, 999, 0, DType::kBf16, 0.f, 0, true, 1.f},
      {12, 6, 3, 70, 70, 7, false, 0, 0, DType::kF32, 0.f, 3, true, 1.f},
      {128, 8, 1, 45, 300, 32, true, 40, 50, DType::kF16, 0.f, 0, true, 1.f},
      {256, 2, 2, 33, 97, 64, true, 64, 0, DType::kF32, 0.1f, 1, true, 1.f},
      {64, 4, 2, 9, 0, 16, true, 0, 0, DType::kF16, 0.f, 0, true, 1.f},
      {1, 3, 1, 5, 9, 4, true, 3, 0, DType::kF16, 0.f, 2, true, 1.f},
      {64, 32, 8, 130, 515, 256, true, 385, 0, DType::kBf16, 0.f, 0, false,
       1.f},
      {128, 8, 2, 3, 4000, 256, false, 4000, 0, DType::kF16, 0.f, 0, true, 4.f},
      {80, 10, 5, 66, 66, 16, true, 1000000, 1000000, DType::kF32, 0.f, 0, true,
       2.f},
  };
  for (const AttentionCase& c : attention_cases) CheckAttention(c, rng);
  CheckAttentionRejectsBadShapes();

  CheckMerge(1, 8, 64, 0, rng);
  CheckMerge(37, 6, 12, 4, rng);
  CheckMerge(129, 32, 128, 0, rng);

  CheckRope(128, 8, 2, 19, false, true, rng);
  CheckRope(64, 4, 4, 33, true, true, rng);
  CheckRope(12, 3, 1, 7, false, false, rng);

  CheckSwiGlu(7, 1000, false, rng);
  CheckSwiGlu(13, 333, true, rng);
  CheckSwiGlu(1, 1, false, rng);

  CheckEmbedding(DType::kF16, 1000, 77, 50, rng);
  CheckEmbedding(DType::kBf16, 321, 128, 17, rng);
  CheckEmbedding(DType::kF32, 64, 5, 12, rng);

  for (auto [rows, dim] :
       {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {13, 1000}, {3, 4097}}) {
    CheckRmsNorm(rows, dim, false, rng);
    CheckRmsNorm(rows, dim, true, rng);
  }
  CheckCublas(rng);
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
