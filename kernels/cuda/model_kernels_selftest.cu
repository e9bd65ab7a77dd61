// model_kernels_selftest: checks the GPU model's own kernels (gemm_cuda.h,
// llama_ops_cuda.h, paged_attention_cuda.h) against double-precision CPU
// references on random inputs of awkward sizes, with the tolerance of each
// check stated beside it. Prints "PASS name: detail" or "FAIL name: detail"
// per check and "N passed, N failed"; exits non-zero on any failure or when
// no GPU is present. Needs CUDA, cuBLAS and the C++ standard library only.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/gemm_cuda.h"
#include "kernels/cuda/llama_ops_cuda.h"
#include "kernels/cuda/paged_attention_cuda.h"
#include "kernels/cuda/selftest_util.h"
#include "kernels/dtype.h"

namespace {

using namespace longctx::kernels::cuda::selftest;  // NOLINT: test helpers.
namespace kd = longctx::kernels;

float RoundTo(DType dtype, float v) {
  uint32_t bits;
  return StoreAs(dtype, v, &bits);
}

// Host copies of a typed device buffer as floats.
std::vector<float> ToFloats(DType dtype, const std::vector<uint8_t>& raw) {
  const size_t n = raw.size() / ElementSize(dtype);
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) {
    if (dtype == DType::kF32) {
      std::memcpy(&out[i], raw.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, raw.data() + 2 * i, 2);
      out[i] = dtype == DType::kF16 ? kd::F16ToF32(h) : kd::Bf16ToF32(h);
    }
  }
  return out;
}

std::vector<uint8_t> FromFloats(DType dtype, const std::vector<float>& v) {
  std::vector<uint8_t> raw(v.size() * ElementSize(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits;
    StoreAs(dtype, v[i], &bits);
    PutElement(dtype, raw.data(), i, bits);
  }
  return raw;
}

// ---------------------------------------------------------------------------
// GEMM through cuBLASLt. fp32: products in fp32 (no TF32), so the error
// against double stays near k * 2^-24 of sum |x w|: tolerance 1e-5 of it.
// bf16: the inputs are rounded to bf16 for the reference too, products
// accumulate in fp32: same tolerance, 1e-5 of sum |x w|.
void CheckGemm(DType dtype, int64_t m, int64_t n, int64_t k, int64_t pad,
               bool accumulate, std::mt19937& rng) {
  const std::string name =
      Format("gemm %s m=%lld n=%lld k=%lld%s", DTypeLabel(dtype), (long long)m,
             (long long)n, (long long)k, accumulate ? " accumulate" : "");
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  const int64_t xs = k + pad, ys = n + pad;
  std::vector<float> x(m * xs), w(n * k), y(m * ys);
  for (auto& v : x) v = RoundTo(dtype, u(rng));
  for (auto& v : w) v = RoundTo(dtype, u(rng));
  for (auto& v : y) v = u(rng);
  DeviceArray<uint8_t> dx, dw;
  DeviceArray<float> dy;
  CHECK_CUDA(name, dx.Upload(FromFloats(dtype, x)));
  CHECK_CUDA(name, dw.Upload(FromFloats(dtype, w)));
  CHECK_CUDA(name, dy.Upload(y));
  std::string error;
  auto gemm = kc::CudaGemm::Create(32 << 20, &error);
  if (gemm == nullptr) return Report(name, false, error);
  // Twice: the second run uses the cached plan.
  for (int run = 0; run < 2; ++run) {
    if (run == 1) CHECK_CUDA(name, dy.Upload(y));
    error = gemm->Run(dtype, dx.get(), xs, dw.get(), dy.get(), ys, m, n, k,
                      accumulate, 0);
    if (!error.empty()) return Report(name, false, error);
    CHECK_CUDA(name, cudaDeviceSynchronize());
  }
  std::vector<float> out;
  CHECK_CUDA(name, dy.Download(&out));
  Worst err;
  bool pad_kept = true;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double ref = accumulate ? y[i * ys + j] : 0.0, mag = 1e-30;
      for (int64_t c = 0; c < k; ++c) {
        ref += double(x[i * xs + c]) * w[j * k + c];
        mag += std::fabs(double(x[i * xs + c]) * w[j * k + c]);
      }
      err.Add(std::fabs(out[i * ys + j] - ref) / mag);
    }
    for (int64_t j = n; j < ys; ++j)
      pad_kept &= out[i * ys + j] == y[i * ys + j];
  }
  Report(name, err.value <= 1e-5 && pad_kept,
         Format("max err %.2e of sum|xw| (tol 1e-5)%s", err.value,
                pad_kept ? "" : ", padding overwritten"));
}

// ---------------------------------------------------------------------------
// NormRows: fp32 math; relative error 1e-5 for fp32 output, and within one
// bf16 rounding (2^-8 relative) plus 1e-5 for bf16 output.
void CheckNormRows(int64_t rows, int64_t dim, bool with_delta, bool indexed,
                   bool update, DType out_dtype, std::mt19937& rng) {
  const std::string name = Format(
      "norm_rows rows=%lld dim=%lld%s%s%s -> %s", (long long)rows,
      (long long)dim, with_delta ? " +delta" : "", indexed ? " indexed" : "",
      update ? " update" : "", DTypeLabel(out_dtype));
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  const int64_t all_rows = rows + 3;
  std::vector<float> res(all_rows * dim), delta(all_rows * dim), wt(dim);
  for (auto& v : res) v = u(rng);
  for (auto& v : delta) v = u(rng);
  for (auto& v : wt) v = u(rng);
  std::vector<int32_t> index(rows);
  for (int64_t r = 0; r < rows; ++r)
    index[r] = indexed ? (r * 7 + 2) % all_rows : r;
  if (indexed) {  // Distinct rows: shuffle a permutation prefix.
    std::vector<int32_t> perm(all_rows);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t r = 0; r < rows; ++r) index[r] = perm[r];
  }
  const int64_t out_stride = dim + 5;
  DeviceArray<float> dres, ddelta, dw;
  DeviceArray<int32_t> dindex;
  DeviceArray<uint8_t> dout;
  CHECK_CUDA(name, dres.Upload(res));
  CHECK_CUDA(name, ddelta.Upload(delta));
  CHECK_CUDA(name, dw.Upload(wt));
  CHECK_CUDA(name, dindex.Upload(index));
  CHECK_CUDA(name, dout.Alloc(rows * out_stride * ElementSize(out_dtype)));
  CHECK_LAUNCH(
      name, kc::NormRows(dres.get(), with_delta ? ddelta.get() : nullptr,
                         indexed ? dindex.get() : nullptr, rows, dim, dw.get(),
                         1e-5f, update, out_dtype, dout.get(), out_stride, 0));
  std::vector<uint8_t> raw;
  std::vector<float> res_after;
  CHECK_CUDA(name, dout.Download(&raw));
  CHECK_CUDA(name, dres.Download(&res_after));
  const std::vector<float> out = ToFloats(out_dtype, raw);
  Worst err;
  bool residual_ok = true;
  std::vector<bool> touched(all_rows, false);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = index[r];
    touched[s] = true;
    double ss = 0;
    std::vector<double> v(dim);
    for (int64_t i = 0; i < dim; ++i) {
      v[i] = double(res[s * dim + i]) + (with_delta ? delta[s * dim + i] : 0.f);
      ss += v[i] * v[i];
      const float want_res = update ? float(v[i]) : res[s * dim + i];
      residual_ok &= std::fabs(res_after[s * dim + i] - want_res) <= 1e-6f;
    }
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int64_t i = 0; i < dim; ++i) {
      const double ref = v[i] * inv * wt[i];
      err.Add(std::fabs(out[r * out_stride + i] - ref) /
              (std::fabs(ref) + 1e-3));
    }
  }
  for (int64_t s = 0; s < all_rows; ++s) {
    if (touched[s]) continue;
    for (int64_t i = 0; i < dim; ++i)
      residual_ok &= res_after[s * dim + i] == res[s * dim + i];
  }
  const double tol = out_dtype == DType::kF32 ? 1e-5 : 1.0 / 256 + 1e-5;
  Report(name, err.value <= tol && residual_ok,
         Format("max rel err %.2e (tol %.1e)%s", err.value, tol,
                residual_ok ? "" : ", residual wrong"));
}

// ---------------------------------------------------------------------------
// RopeTable + QkvPost: rotation in fp32 from double angles (1e-5 of
// |a| + |b|), q16 within one fp16 rounding, keys and values stored at the
// right block and slot (rounded to the cache type, exact otherwise), tokens
// with no block store nothing.
void CheckQkvPost(int heads, int kv_heads, int hd, int64_t n, int block_size,
                  DType kv_dtype, bool bias, std::mt19937& rng) {
  const std::string name = Format(
      "qkv_post heads=%d/%d d=%d n=%lld block=%d %s%s", heads, kv_heads, hd,
      (long long)n, block_size, DTypeLabel(kv_dtype), bias ? " bias" : "");
  const int half = hd / 2;
  const int64_t q_dim = int64_t{heads} * hd, kv_dim = int64_t{kv_heads} * hd;
  const int64_t row = q_dim + 2 * kv_dim;
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> qkv(n * row), b(row), inv_freq(half);
  for (auto& v : qkv) v = u(rng);
  for (auto& v : b) v = u(rng);
  for (int i = 0; i < half; ++i)
    inv_freq[i] = std::pow(500000.0, -2.0 * i / hd);
  std::vector<int32_t> pos(n), blk(n), slot(n);
  const int layers = 3, layer = 1, pool_blocks = 9;
  std::uniform_int_distribution<int32_t> pos_dist(0, 3000000);
  for (int64_t t = 0; t < n; ++t) {
    pos[t] = pos_dist(rng);
    // Every 5th token stores nothing (a padded row of a graph).
    blk[t] = t % 5 == 4 ? -1 : int32_t(t % pool_blocks);
    slot[t] = int32_t((t * 3) % block_size);
  }
  // Distinct (block, slot) per stored token.
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t s = 0; s < t; ++s) {
      if (blk[s] == blk[t] && slot[s] == slot[t]) blk[t] = -1;
    }
  }
  const size_t elem = ElementSize(kv_dtype);
  const int64_t tensor = int64_t{kv_heads} * block_size * hd;
  const int64_t block_bytes = layers * 2 * tensor * elem;
  std::vector<uint8_t> pool(pool_blocks * block_bytes);
  for (size_t e = 0; e < pool.size() / elem; ++e) {
    PutElement(kv_dtype, pool.data(), e, NaNBits(kv_dtype));
  }
  DeviceArray<float> dqkv, dbias, dfreq;
  DeviceArray<float2> dtable;
  DeviceArray<int32_t> dpos, dblk, dslot;
  DeviceArray<uint8_t> dpool;
  DeviceArray<uint16_t> dq16;
  CHECK_CUDA(name, dqkv.Upload(qkv));
  CHECK_CUDA(name, dbias.Upload(b));
  CHECK_CUDA(name, dfreq.Upload(inv_freq));
  CHECK_CUDA(name, dpos.Upload(pos));
  CHECK_CUDA(name, dblk.Upload(blk));
  CHECK_CUDA(name, dslot.Upload(slot));
  CHECK_CUDA(name, dpool.Upload(pool));
  CHECK_CUDA(name, dtable.Alloc(n * half));
  CHECK_CUDA(name, dq16.Alloc(n * q_dim));
  CHECK_LAUNCH(
      name, kc::RopeTable(dfreq.get(), half, dpos.get(), n, dtable.get(), 0));
  kc::KvDest dest;
  dest.pool = dpool.get();
  dest.block_bytes = block_bytes;
  dest.layer = layer;
  dest.block_size = block_size;
  dest.kv_dtype = kv_dtype;
  dest.block_id = dblk.get();
  dest.slot = dslot.get();
  CHECK_LAUNCH(name, kc::QkvPost(dqkv.get(), n, heads, kv_heads, hd,
                                 bias ? dbias.get() : nullptr, dtable.get(),
                                 dq16.get(), dest, 0));
  std::vector<float> got;
  std::vector<uint16_t> q16;
  std::vector<uint8_t> pool_after;
  CHECK_CUDA(name, dqkv.Download(&got));
  CHECK_CUDA(name, dq16.Download(&q16));
  CHECK_CUDA(name, dpool.Download(&pool_after));
  Worst rot_err, q16_err, kv_err;
  std::vector<bool> written(pool.size() / elem, false);
  auto cache_at = [&](int32_t block, int kv, int kh, int32_t s, int x) {
    return size_t(block) * (block_bytes / elem) + size_t(layer) * 2 * tensor +
           size_t(kv) * tensor + (size_t(kh) * block_size + s) * hd + x;
  };
  const std::vector<float> pool_f = ToFloats(kv_dtype, pool_after);
  for (int64_t t = 0; t < n; ++t) {
    const double p = pos[t];
    for (int h = 0; h < heads + kv_heads; ++h) {
      for (int i = 0; i < half; ++i) {
        const int64_t ia = t * row + int64_t{h} * hd + i, ib = ia + half;
        const double a = double(qkv[ia]) + (bias ? b[h * hd + i] : 0.f);
        const double bb = double(qkv[ib]) + (bias ? b[h * hd + i + half] : 0.f);
        const double ang = p * double(inv_freq[i]);
        const double c = float(std::cos(ang)), s = float(std::sin(ang));
        const double ya = a * c - bb * s, yb = bb * c + a * s;
        const double mag = std::fabs(a) + std::fabs(bb);
        rot_err.Add(std::fabs(got[ia] - ya) / mag);
        rot_err.Add(std::fabs(got[ib] - yb) / mag);
        if (h < heads) {
          q16_err.Add(
              std::fabs(kd::F16ToF32(q16[t * q_dim + h * hd + i]) - ya) / mag);
          q16_err.Add(
              std::fabs(kd::F16ToF32(q16[t * q_dim + h * hd + i + half]) - yb) /
              mag);
        } else if (blk[t] >= 0) {
          const int kh = h - heads;
          const size_t at = cache_at(blk[t], 0, kh, slot[t], i);
          const size_t bt = cache_at(blk[t], 0, kh, slot[t], i + half);
          written[at] = written[bt] = true;
          kv_err.Add(std::fabs(pool_f[at] - RoundTo(kv_dtype, got[ia])));
          kv_err.Add(std::fabs(pool_f[bt] - RoundTo(kv_dtype, got[ib])));
        }
      }
    }
    if (blk[t] < 0) continue;
    for (int64_t idx = 0; idx < kv_dim; ++idx) {
      const int kh = int(idx / hd), x = int(idx % hd);
      const float v = qkv[t * row + q_dim + kv_dim + idx] +
                      (bias ? b[q_dim + kv_dim + idx] : 0.f);
      const size_t at = cache_at(blk[t], 1, kh, slot[t], x);
      written[at] = true;
      kv_err.Add(std::fabs(pool_f[at] - RoundTo(kv_dtype, v)));
    }
  }
  bool untouched = true;
  for (size_t e = 0; e < written.size(); ++e) {
    if (!written[e]) untouched &= std::isnan(pool_f[e]);
  }
  const bool ok = rot_err.value <= 1e-5 && q16_err.value <= 1.0 / 1024 &&
                  kv_err.value <= 1e-6 && untouched;
  Report(name, ok,
         Format("rotation %.2e (tol 1e-5), q16 %.2e (tol 1e-3), kv %.2e "
                "(tol 1e-6)%s",
                rot_err.value, q16_err.value, kv_err.value,
                untouched ? "" : ", wrote outside its slots"));
}

// ---------------------------------------------------------------------------
// SwiGLU: fp32, relative 1e-5; bf16 output within one rounding.
void CheckSwiGluRows(int64_t rows, int64_t dim, DType out_dtype,
                     std::mt19937& rng) {
  const std::string name =
      Format("swiglu_rows rows=%lld dim=%lld -> %s", (long long)rows,
             (long long)dim, DTypeLabel(out_dtype));
  std::uniform_real_distribution<float> u(-6.f, 6.f);
  std::vector<float> gu(rows * 2 * dim);
  for (auto& v : gu) v = u(rng);
  DeviceArray<float> dgu;
  DeviceArray<uint8_t> dout;
  CHECK_CUDA(name, dgu.Upload(gu));
  CHECK_CUDA(name, dout.Alloc(rows * dim * ElementSize(out_dtype)));
  CHECK_LAUNCH(name,
               kc::SwiGluRows(dgu.get(), rows, dim, out_dtype, dout.get(), 0));
  std::vector<uint8_t> raw;
  CHECK_CUDA(name, dout.Download(&raw));
  const std::vector<float> out = ToFloats(out_dtype, raw);
  Worst err;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < dim; ++i) {
      const double g = gu[r * 2 * dim + i], up = gu[r * 2 * dim + dim + i];
      const double ref = g / (1 + std::exp(-g)) * up;
      err.Add(std::fabs(out[r * dim + i] - ref) / (std::fabs(ref) + 1e-3));
    }
  }
  const double tol = out_dtype == DType::kF32 ? 1e-5 : 1.0 / 256 + 1e-5;
  Report(name, err.value <= tol,
         Format("max rel err %.2e (tol %.1e)", err.value, tol));
}

// ---------------------------------------------------------------------------
// Paged attention, prefill (tensor cores) and decode (split-KV).

struct Seq {
  int n_q;     // Query rows.
  int q_pos;   // Position of the first.
  int kv_len;  // Keys (>= q_pos + n_q).
};

// A pool of shuffled blocks holding every sequence's keys and values (NaN
// elsewhere), the block tables, and the reference values.
struct PagedSetup {
  int layers = 2, layer = 1;
  int block_size = 0, kv_heads = 0, hd = 0;
  DType dtype = DType::kF16;
  int64_t block_bytes = 0;
  std::vector<uint8_t> pool;
  std::vector<int32_t> tables;
  std::vector<int32_t> table_offset;
  // k_ref[s][(j * kv_heads + kh) * hd + x]
  std::vector<std::vector<float>> k_ref, v_ref;
};

PagedSetup MakePaged(const std::vector<Seq>& seqs, int block_size, int kv_heads,
                     int hd, DType dtype, std::mt19937& rng) {
  PagedSetup p;
  p.block_size = block_size;
  p.kv_heads = kv_heads;
  p.hd = hd;
  p.dtype = dtype;
  const size_t elem = ElementSize(dtype);
  const int64_t tensor = int64_t{kv_heads} * block_size * hd;
  p.block_bytes = p.layers * 2 * tensor * elem;
  int total_blocks = 0;
  for (const Seq& s : seqs)
    total_blocks += (s.kv_len + block_size - 1) / block_size;
  const int pool_blocks = total_blocks + 3;
  std::vector<int32_t> ids(pool_blocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  p.pool.assign(pool_blocks * p.block_bytes, 0);
  for (size_t e = 0; e < p.pool.size() / elem; ++e) {
    PutElement(dtype, p.pool.data(), e, NaNBits(dtype));
  }
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  int next = 0;
  for (const Seq& s : seqs) {
    p.table_offset.push_back(int32_t(p.tables.size()));
    const int nb = (s.kv_len + block_size - 1) / block_size;
    for (int b = 0; b < nb; ++b) p.tables.push_back(ids[next++]);
    std::vector<float> kr(size_t(s.kv_len) * kv_heads * hd), vr(kr.size());
    for (int j = 0; j < s.kv_len; ++j) {
      const int32_t block = p.tables[p.table_offset.back() + j / block_size];
      const int slot = j % block_size;
      for (int kh = 0; kh < kv_heads; ++kh) {
        for (int x = 0; x < hd; ++x) {
          const size_t base = size_t(block) * (p.block_bytes / elem) +
                              size_t(p.layer) * 2 * tensor +
                              (size_t(kh) * block_size + slot) * hd + x;
          const size_t ref = (size_t(j) * kv_heads + kh) * hd + x;
          uint32_t bits;
          kr[ref] = StoreAs(dtype, u(rng), &bits);
          PutElement(dtype, p.pool.data(), base, bits);
          vr[ref] = StoreAs(dtype, u(rng), &bits);
          PutElement(dtype, p.pool.data(), base + tensor, bits);
        }
      }
    }
    p.k_ref.push_back(std::move(kr));
    p.v_ref.push_back(std::move(vr));
  }
  return p;
}

// Reference output of one query row (already rounded as the kernel sees it)
// of head h, seeing keys 0..visible-1.
void RefRow(const PagedSetup& p, int s, const float* q, int h, int group,
            int visible, double scale, double* out) {
  const int kh = h / group, hd = p.hd;
  std::fill(out, out + hd, 0.0);
  if (visible <= 0) return;
  std::vector<double> w(visible);
  double mx = -kInf;
  for (int j = 0; j < visible; ++j) {
    double dot = 0;
    const float* k = &p.k_ref[s][(size_t(j) * p.kv_heads + kh) * hd];
    for (int x = 0; x < hd; ++x) dot += double(q[x]) * k[x];
    w[j] = dot * scale;
    mx = std::max(mx, w[j]);
  }
  double sum = 0;
  for (int j = 0; j < visible; ++j) sum += (w[j] = std::exp(w[j] - mx));
  for (int j = 0; j < visible; ++j) {
    const float* v = &p.v_ref[s][(size_t(j) * p.kv_heads + kh) * hd];
    for (int x = 0; x < hd; ++x) out[x] += w[j] / sum * v[x];
  }
}

kc::PagedPool PoolView(const PagedSetup& p, const void* device_pool) {
  kc::PagedPool view;
  view.pool = device_pool;
  view.block_bytes = p.block_bytes;
  view.layer = p.layer;
  view.block_size = p.block_size;
  view.num_kv_heads = p.kv_heads;
  view.head_dim = p.hd;
  view.dtype = p.dtype;
  return view;
}

// Tolerance: probabilities are rounded to fp16 before P V (relative 2^-11
// each; q is fp16 in the reference too): |o| <= 1, so 2e-3 absolute beyond
// the output's own rounding (|o| / 256 for bf16).
void CheckPrefill(const std::vector<Seq>& seqs, int heads, int kv_heads, int hd,
                  int block_size, DType out_dtype, std::mt19937& rng) {
  std::string shape;
  for (const Seq& s : seqs)
    shape += Format(" %d@%d/%d", s.n_q, s.q_pos, s.kv_len);
  const std::string name =
      Format("prefill_attention d=%d heads=%d/%d block=%d -> %s seqs:%s", hd,
             heads, kv_heads, block_size, DTypeLabel(out_dtype), shape.c_str());
  PagedSetup p = MakePaged(seqs, block_size, kv_heads, hd, DType::kF16, rng);
  const int64_t q_stride = int64_t{heads} * hd + 8;
  int total_rows = 0;
  for (const Seq& s : seqs) total_rows += s.n_q;
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> q(size_t(total_rows) * q_stride, 0.f);
  std::vector<uint16_t> q16(q.size(), 0);
  for (size_t i = 0; i < q.size(); ++i) {
    q16[i] = kd::F32ToF16(normal(rng));
    q[i] = kd::F16ToF32(q16[i]);
  }
  std::vector<kc::PrefillSeq> meta;
  std::vector<kc::PrefillTile> tiles;
  int row = 0;
  for (size_t s = 0; s < seqs.size(); ++s) {
    kc::PrefillSeq m;
    m.q_row = row;
    m.n_q = seqs[s].n_q;
    m.q_pos = seqs[s].q_pos;
    m.kv_len = seqs[s].kv_len;
    m.table_offset = p.table_offset[s];
    meta.push_back(m);
    for (int r = 0; r < m.n_q; r += kc::kPrefillTileRows) {
      tiles.push_back({int32_t(s), r});
    }
    row += m.n_q;
  }
  const int64_t out_stride = int64_t{heads} * hd + 3;
  DeviceArray<uint16_t> dq;
  DeviceArray<kc::PrefillSeq> dmeta;
  DeviceArray<kc::PrefillTile> dtiles;
  DeviceArray<int32_t> dtables;
  DeviceArray<uint8_t> dpool, dout;
  CHECK_CUDA(name, dq.Upload(q16));
  CHECK_CUDA(name, dmeta.Upload(meta));
  CHECK_CUDA(name, dtiles.Upload(tiles));
  CHECK_CUDA(name, dtables.Upload(p.tables));
  CHECK_CUDA(name, dpool.Upload(p.pool));
  CHECK_CUDA(name, dout.Upload(std::vector<uint8_t>(
                       size_t(total_rows) * out_stride * ElementSize(out_dtype),
                       0xff)));
  CHECK_LAUNCH(
      name, kc::PrefillAttention(dq.get(), q_stride, dmeta.get(), dtiles.get(),
                                 int(tiles.size()), dtables.get(),
                                 PoolView(p, dpool.get()), heads, 0.f,
                                 out_dtype, dout.get(), out_stride, 0));
  std::vector<uint8_t> raw;
  CHECK_CUDA(name, dout.Download(&raw));
  const std::vector<float> out = ToFloats(out_dtype, raw);
  const double scale = 1.0 / std::sqrt(double(hd));
  Worst err;
  std::vector<double> ref(hd);
  const int group = heads / kv_heads;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int r = 0; r < seqs[s].n_q; ++r) {
      const int visible = std::min(seqs[s].kv_len, seqs[s].q_pos + r + 1);
      const int64_t batch_row = meta[s].q_row + r;
      for (int h = 0; h < heads; ++h) {
        RefRow(p, int(s), &q[batch_row * q_stride + int64_t{h} * hd], h, group,
               visible, scale, ref.data());
        for (int x = 0; x < hd; ++x) {
          const double got = out[batch_row * out_stride + int64_t{h} * hd + x];
          const double rounding =
              out_dtype == DType::kF32 ? 0.0 : std::fabs(ref[x]) / 256;
          err.Add(std::max(0.0, std::fabs(got - ref[x]) - rounding));
        }
      }
    }
  }
  Report(name, err.value <= 2e-3,
         Format("max |o err| %.2e (tol 2e-3)", err.value));
}

// Tolerance: fp32 throughout, 1e-5 absolute on |o| <= 1 beyond the output's
// own rounding (|o| / 256 for bf16).
void CheckDecode(const std::vector<int>& kv_lens, int heads, int kv_heads,
                 int hd, int block_size, DType kv_dtype, int max_splits,
                 DType out_dtype, std::mt19937& rng) {
  std::string shape;
  for (int len : kv_lens) shape += Format(" %d", len);
  const std::string name = Format(
      "decode_attention d=%d heads=%d/%d block=%d %s splits<=%d -> %s lens:%s",
      hd, heads, kv_heads, block_size, DTypeLabel(kv_dtype), max_splits,
      DTypeLabel(out_dtype), shape.c_str());
  std::vector<Seq> seqs;
  for (int len : kv_lens) seqs.push_back({1, std::max(len - 1, 0), len});
  PagedSetup p = MakePaged(seqs, block_size, kv_heads, hd, kv_dtype, rng);
  const int n = int(kv_lens.size());
  const int64_t q_stride = int64_t{heads} * hd + 5;
  const int rows = n + 2;  // Entries use rows in reverse order, some unused.
  std::normal_distribution<float> normal(0.f, 1.f);
  std::vector<float> q(size_t(rows) * q_stride);
  for (auto& v : q) v = normal(rng);
  std::vector<int32_t> q_row(n), lens(kv_lens.begin(), kv_lens.end());
  for (int e = 0; e < n; ++e) q_row[e] = rows - 1 - e;
  const int64_t out_stride = int64_t{heads} * hd + 2;
  DeviceArray<float> dq, dwork;
  DeviceArray<int32_t> drow, dlen, doff, dtables;
  DeviceArray<uint8_t> dpool, dout;
  CHECK_CUDA(name, dq.Upload(q));
  CHECK_CUDA(name, drow.Upload(q_row));
  CHECK_CUDA(name, dlen.Upload(lens));
  CHECK_CUDA(name, doff.Upload(p.table_offset));
  std::vector<int32_t> tables = p.tables;
  if (tables.empty()) tables.push_back(0);
  CHECK_CUDA(name, dtables.Upload(tables));
  CHECK_CUDA(name, dpool.Upload(p.pool));
  CHECK_CUDA(name,
             dwork.Alloc(kc::DecodeWorkspaceFloats(n, heads, hd, max_splits)));
  CHECK_CUDA(name,
             dout.Upload(std::vector<uint8_t>(
                 size_t(rows) * out_stride * ElementSize(out_dtype), 0xff)));
  CHECK_LAUNCH(
      name, kc::DecodeAttention(
                dq.get(), q_stride, drow.get(), dlen.get(), doff.get(), n,
                dtables.get(), PoolView(p, dpool.get()), heads, 0.f, max_splits,
                dwork.get(), out_dtype, dout.get(), out_stride, 0));
  std::vector<uint8_t> raw;
  CHECK_CUDA(name, dout.Download(&raw));
  const std::vector<float> out = ToFloats(out_dtype, raw);
  const double scale = 1.0 / std::sqrt(double(hd));
  Worst err;
  std::vector<double> ref(hd);
  for (int e = 0; e < n; ++e) {
    for (int h = 0; h < heads; ++h) {
      RefRow(p, e, &q[q_row[e] * q_stride + int64_t{h} * hd], h,
             heads / kv_heads, kv_lens[e], scale, ref.data());
      for (int x = 0; x < hd; ++x) {
        const double got = out[q_row[e] * out_stride + int64_t{h} * hd + x];
        const double rounding =
            out_dtype == DType::kF32 ? 0.0 : std::fabs(ref[x]) / 256;
        err.Add(std::max(0.0, std::fabs(got - ref[x]) - rounding));
      }
    }
  }
  const double tol = 1e-5;
  Report(name, err.value <= tol,
         Format("max |o err| %.2e (tol %.0e)", err.value, tol));
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
  std::mt19937 rng(7);
  CheckGemm(DType::kF32, 37, 45, 77, 3, false, rng);
  CheckGemm(DType::kBf16, 1, 1000, 512, 0, false, rng);
  CheckGemm(DType::kBf16, 300, 96, 200, 8, true, rng);
  CheckGemm(DType::kF32, 64, 258, 64, 0, true, rng);

  for (DType out : {DType::kF32, DType::kBf16}) {
    CheckNormRows(7, 33, false, false, false, out, rng);
    CheckNormRows(13, 1000, true, false, true, out, rng);
    CheckNormRows(5, 4097, true, true, false, out, rng);
  }
  CheckNormRows(1, 2048, false, true, false, DType::kF32, rng);

  CheckQkvPost(8, 2, 128, 19, 16, DType::kF16, true, rng);
  CheckQkvPost(4, 4, 64, 33, 256, DType::kF32, false, rng);
  CheckQkvPost(6, 3, 12, 7, 5, DType::kF16, false, rng);

  CheckSwiGluRows(7, 1000, DType::kF32, rng);
  CheckSwiGluRows(13, 333, DType::kBf16, rng);

  // Prefill: several sequences, chunks that start mid-sequence, tiles and
  // key tiles cut anywhere, block sizes that do and do not divide the tile.
  CheckPrefill({{37, 0, 37}}, 8, 2, 64, 16, DType::kF32, rng);
  CheckPrefill({{130, 385, 515}, {1, 70, 71}, {64, 0, 64}}, 32, 8, 64, 256,
               DType::kF32, rng);
  CheckPrefill({{200, 0, 200}, {65, 300, 365}}, 4, 4, 128, 7, DType::kBf16,
               rng);
  CheckPrefill({{129, 1000, 1129}}, 8, 1, 128, 64, DType::kF32, rng);
  CheckPrefill({{3, 5000, 5003}, {300, 0, 300}}, 16, 4, 128, 256, DType::kBf16,
               rng);

  // Decode: empty, single-key, odd and long contexts, one or many splits.
  CheckDecode({1, 0, 37, 256, 257, 1000}, 8, 2, 64, 16, DType::kF16, 1,
              DType::kF32, rng);
  CheckDecode({4000, 3, 129}, 32, 8, 128, 256, DType::kF16, 64, DType::kF32,
              rng);
  CheckDecode({700, 1}, 6, 3, 12, 7, DType::kF32, 7, DType::kBf16, rng);
  CheckDecode({5000}, 4, 1, 256, 32, DType::kF16, 13, DType::kF32, rng);
  CheckDecode({100, 2000}, 64, 1, 64, 256, DType::kF32, 4, DType::kF32, rng);
  // The fp16 tiled kernel with a group too wide for 48 KiB of shared memory,
  // and the untiled one for fp16 rows of an odd size.
  CheckDecode({3000, 65}, 64, 1, 64, 16, DType::kF16, 9, DType::kBf16, rng);
  CheckDecode({300, 1, 129}, 6, 3, 12, 7, DType::kF16, 3, DType::kF32, rng);
  // Prefill over a long context (many key tiles, both shared-memory stages).
  CheckPrefill({{333, 4000, 4333}}, 8, 2, 64, 256, DType::kF32, rng);
  CheckPrefill({{70, 3000, 3070}, {129, 0, 129}}, 4, 2, 128, 16, DType::kBf16,
               rng);

  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
