#include "model/llama_model.h"

#include <cmath>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"
#include "model/testing/random_llama.h"

namespace longctx {
namespace {

// The reference: a plain double-precision forward over the whole sequence,
// returning the logits of every position.
std::vector<std::vector<double>> Reference(const testing::RandomLlama& m,
                                           const std::vector<int32_t>& tokens) {
  const LlamaShape& s = m.shape;
  const int n = static_cast<int>(tokens.size()), h = s.hidden_size,
            hd = s.head_dim, nh = s.num_heads, nkv = s.num_kv_heads,
            f = s.intermediate_size, g = nh / nkv;
  auto at = [](const TensorRef& t, size_t i) {
    return static_cast<double>(static_cast<const float*>(t.data)[i]);
  };
  std::vector<std::vector<double>> x(n, std::vector<double>(h));
  for (int t = 0; t < n; ++t) {
    for (int j = 0; j < h; ++j)
      x[t][j] = at(m.weights.embed_tokens, size_t(tokens[t]) * h + j);
  }
  auto norm = [&](const std::vector<double>& v, const TensorRef& w) {
    double ss = 0;
    for (double e : v) ss += e * e;
    double scale = 1.0 / std::sqrt(ss / v.size() + s.rms_norm_eps);
    std::vector<double> out(v.size());
    for (size_t j = 0; j < v.size(); ++j) out[j] = v[j] * scale * at(w, j);
    return out;
  };
  auto linear = [&](const std::vector<double>& v, const TensorRef& w,
                    int out_dim, const TensorRef& bias) {
    std::vector<double> out(out_dim);
    for (int o = 0; o < out_dim; ++o) {
      double acc = bias.data ? at(bias, o) : 0.0;
      for (size_t i = 0; i < v.size(); ++i)
        acc += v[i] * at(w, size_t(o) * v.size() + i);
      out[o] = acc;
    }
    return out;
  };
  auto rope = [&](std::vector<double>& v, int heads, int pos) {
    for (int head = 0; head < heads; ++head) {
      for (int i = 0; i < hd / 2; ++i) {
        double freq = std::pow(s.rope.theta, -2.0 * i / hd);
        double c = std::cos(pos * freq), sn = std::sin(pos * freq);
        double a = v[head * hd + i], b = v[head * hd + i + hd / 2];
        v[head * hd + i] = a * c - b * sn;
        v[head * hd + i + hd / 2] = b * c + a * sn;
      }
    }
  };
  for (const LlamaWeights::Layer& w : m.weights.layers) {
    std::vector<std::vector<double>> q(n), k(n), v(n);
    for (int t = 0; t < n; ++t) {
      auto xn = norm(x[t], w.input_norm);
      q[t] = linear(xn, w.q, nh * hd, w.q_bias);
      k[t] = linear(xn, w.k, nkv * hd, w.k_bias);
      v[t] = linear(xn, w.v, nkv * hd, w.v_bias);
      rope(q[t], nh, t);
      rope(k[t], nkv, t);
    }
    for (int t = 0; t < n; ++t) {
      std::vector<double> attn(nh * hd, 0.0);
      for (int head = 0; head < nh; ++head) {
        const int kvh = head / g;
        std::vector<double> scores(t + 1);
        double top = -1e300;
        for (int j = 0; j <= t; ++j) {
          double dot = 0;
          for (int d = 0; d < hd; ++d)
            dot += q[t][head * hd + d] * k[j][kvh * hd + d];
          scores[j] = dot / std::sqrt(double(hd));
          top = std::max(top, scores[j]);
        }
        double sum = 0;
        for (double& sc : scores) sum += (sc = std::exp(sc - top));
        for (int j = 0; j <= t; ++j) {
          for (int d = 0; d < hd; ++d)
            attn[head * hd + d] += scores[j] / sum * v[j][kvh * hd + d];
        }
      }
      auto o = linear(attn, w.o, h, TensorRef());
      for (int j = 0; j < h; ++j) x[t][j] += o[j];
      auto xn = norm(x[t], w.post_attention_norm);
      auto gate = linear(xn, w.gate, f, TensorRef());
      auto up = linear(xn, w.up, f, TensorRef());
      std::vector<double> act(f);
      for (int j = 0; j < f; ++j)
        act[j] = gate[j] / (1 + std::exp(-gate[j])) * up[j];
      auto down = linear(act, w.down, h, TensorRef());
      for (int j = 0; j < h; ++j) x[t][j] += down[j];
    }
  }
  const TensorRef& head =
      m.weights.lm_head.data ? m.weights.lm_head : m.weights.embed_tokens;
  std::vector<std::vector<double>> logits(n);
  for (int t = 0; t < n; ++t) {
    logits[t] = linear(norm(x[t], m.weights.final_norm), head, s.vocab_size,
                       TensorRef());
  }
  return logits;
}

// Largest |a - b| over the row, relative to the row's largest |b| (logits of a
// random model are O(1); the row scale keeps near-zero entries from
// dominating).
double RowError(const float* a, const std::vector<double>& b) {
  double worst = 0, scale = 1e-6;
  for (double v : b) scale = std::max(scale, std::fabs(v));
  for (size_t i = 0; i < b.size(); ++i)
    worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst / scale;
}

class Fixture {
 public:
  Fixture(const testing::RandomLlama& m, KvDtype dtype, int block_size = 8)
      : model_(*LlamaModel::Create(m.shape, m.weights, LlamaModelOptions())),
        pool_(*KvBlockPool::Create(
            model_->KvLayoutFor(block_size, dtype),
            model_->KvLayoutFor(block_size, dtype).BlockBytes() * 64)) {}

  std::vector<int> Blocks(int n) {
    std::vector<int> blocks;
    for (int i = 0; i < n; ++i) blocks.push_back(*pool_->Allocate());
    return blocks;
  }

  // Runs spans; returns the logits rows.
  std::vector<float> Run(const std::vector<SeqSpan>& spans) {
    int rows = 0;
    for (const auto& span : spans) rows += span.want_logits;
    std::vector<float> logits(size_t(rows) * model_->vocab_size());
    absl::Status status = model_->Forward(spans, *pool_, logits.data());
    EXPECT_TRUE(status.ok()) << status;
    return logits;
  }

  int vocab() const { return model_->vocab_size(); }

 private:
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<KvBlockPool> pool_;
};

// fp32 KV: the model and the reference differ only by fp32 rounding in GEMMs
// and attention across 3 layers: 1e-4 of the row scale.
constexpr double kF32Tolerance = 1e-4;

TEST(LlamaModelTest, PrefillMatchesTheReference) {
  for (bool biases : {false, true}) {
    for (bool tied : {false, true}) {
      testing::RandomLlama m = testing::MakeRandomLlama(biases, tied, 11);
      Fixture fx(m, KvDtype::kF32);
      auto tokens = testing::RandomTokens(37, m.shape.vocab_size, 5);
      auto blocks = fx.Blocks(5);
      auto logits = fx.Run({{tokens, 0, blocks, true}});
      auto ref = Reference(m, tokens);
      EXPECT_LT(RowError(logits.data(), ref.back()), kF32Tolerance)
          << "biases=" << biases << " tied=" << tied;
    }
  }
}

TEST(LlamaModelTest, IncrementalDecodeMatchesFullRecompute) {
  testing::RandomLlama m = testing::MakeRandomLlama(false, false, 12);
  Fixture fx(m, KvDtype::kF32);
  auto tokens = testing::RandomTokens(41, m.shape.vocab_size, 6);
  auto ref = Reference(m, tokens);
  auto blocks = fx.Blocks(6);
  const int prompt = 19;
  std::vector<int32_t> head(tokens.begin(), tokens.begin() + prompt);
  auto logits = fx.Run({{head, 0, blocks, true}});
  EXPECT_LT(RowError(logits.data(), ref[prompt - 1]), kF32Tolerance);
  for (int pos = prompt; pos < 41; ++pos) {
    auto step =
        fx.Run({{absl::MakeConstSpan(&tokens[pos], 1), pos, blocks, true}});
    ASSERT_LT(RowError(step.data(), ref[pos]), kF32Tolerance)
        << "position " << pos;
  }
}

TEST(LlamaModelTest, ChunkedPrefillMatchesOneShotPrefill) {
  testing::RandomLlama m = testing::MakeRandomLlama(true, false, 13);
  Fixture fx(m, KvDtype::kF32);
  auto tokens = testing::RandomTokens(50, m.shape.vocab_size, 7);
  auto ref = Reference(m, tokens);
  auto blocks = fx.Blocks(7);
  auto all = absl::MakeConstSpan(tokens);
  // Chunks that straddle block boundaries (block size 8).
  fx.Run({{all.subspan(0, 13), 0, blocks, false}});
  fx.Run({{all.subspan(13, 20), 13, blocks, false}});
  auto logits = fx.Run({{all.subspan(33, 17), 33, blocks, true}});
  EXPECT_LT(RowError(logits.data(), ref.back()), kF32Tolerance);
}

TEST(LlamaModelTest, BatchedStepEqualsSequencesRunAlone) {
  testing::RandomLlama m = testing::MakeRandomLlama(false, true, 14);
  Fixture fx(m, KvDtype::kF32);
  auto a = testing::RandomTokens(23, m.shape.vocab_size, 8);
  auto b = testing::RandomTokens(9, m.shape.vocab_size, 9);
  auto ref_a = Reference(m, a);
  auto ref_b = Reference(m, b);
  auto blocks_a = fx.Blocks(3);
  auto blocks_b = fx.Blocks(2);
  // Prefill of b batched with a's prefill, then a decode of both in one step.
  auto first =
      fx.Run({{absl::MakeConstSpan(a).subspan(0, 22), 0, blocks_a, true},
              {absl::MakeConstSpan(b).subspan(0, 8), 0, blocks_b, true}});
  EXPECT_LT(RowError(first.data(), ref_a[21]), kF32Tolerance);
  EXPECT_LT(RowError(first.data() + fx.vocab(), ref_b[7]), kF32Tolerance);
  auto step = fx.Run({{absl::MakeConstSpan(&a[22], 1), 22, blocks_a, true},
                      {absl::MakeConstSpan(&b[8], 1), 8, blocks_b, true}});
  EXPECT_LT(RowError(step.data(), ref_a[22]), kF32Tolerance);
  EXPECT_LT(RowError(step.data() + fx.vocab(), ref_b[8]), kF32Tolerance);
}

TEST(LlamaModelTest, Fp16CacheStaysCloseToTheReference) {
  testing::RandomLlama m = testing::MakeRandomLlama(false, false, 15);
  Fixture fx(m, KvDtype::kF16);
  auto tokens = testing::RandomTokens(30, m.shape.vocab_size, 10);
  auto ref = Reference(m, tokens);
  auto blocks = fx.Blocks(4);
  auto logits = fx.Run({{tokens, 0, blocks, true}});
  // fp16 keys and values carry ~5e-4 relative error each; through 3 layers the
  // logits stay within 1e-2 of the row scale.
  EXPECT_LT(RowError(logits.data(), ref.back()), 1e-2);
}

// bf16 compute (--compute_precision=bf16): every GEMM and attention's
// products take their inputs rounded to bf16 (2^-9 relative each; sums stay
// fp32), weights and activations alike, in each of 3 layers and the lm_head,
// over an fp16 cache. Observed: up to 7e-3 of the row scale over a prefill
// (attention on bf16 tiles) and the decode steps after it (fp32 attention
// over the cache); the tolerance is 3e-2. A wrong key, head or position
// anywhere moves the logits by 1e-1 or more.
constexpr double kBf16ComputeTolerance = 3e-2;

// Runs a 57-token prefill then 3 decode steps of a model built with `options`
// over an fp16 cache and returns the largest RowError against the reference.
double ErrorOverPrefillAndDecode(const LlamaModelOptions& options) {
  testing::RandomLlama m = testing::MakeRandomLlama(true, false, 17);
  auto model = LlamaModel::Create(m.shape, m.weights, options);
  EXPECT_TRUE(model.ok()) << model.status();
  if (!model.ok()) return 1e9;
  const KvLayout layout = (*model)->KvLayoutFor(8, KvDtype::kF16);
  auto pool = KvBlockPool::Create(layout, layout.BlockBytes() * 16);
  EXPECT_TRUE(pool.ok()) << pool.status();
  if (!pool.ok()) return 1e9;
  std::vector<int> blocks;
  for (int i = 0; i < 8; ++i) blocks.push_back(*(*pool)->Allocate());
  auto tokens = testing::RandomTokens(60, m.shape.vocab_size, 11);
  auto ref = Reference(m, tokens);
  std::vector<float> logits(m.shape.vocab_size);
  const int prompt = 57;
  EXPECT_TRUE((*model)
                  ->Forward({{absl::MakeConstSpan(tokens).subspan(0, prompt), 0,
                              blocks, true}},
                            **pool, logits.data())
                  .ok());
  double worst = RowError(logits.data(), ref[prompt - 1]);
  for (int pos = prompt; pos < 60; ++pos) {
    EXPECT_TRUE((*model)
                    ->Forward({{absl::MakeConstSpan(&tokens[pos], 1), pos,
                                blocks, true}},
                              **pool, logits.data())
                    .ok());
    worst = std::max(worst, RowError(logits.data(), ref[pos]));
  }
  return worst;
}

TEST(LlamaModelTest, Bf16ComputeStaysCloseToTheReference) {
  if (!kernels::Bf16GemmSupported()) GTEST_SKIP() << "no bf16 on this CPU";
  LlamaModelOptions options;
  options.precision = kernels::ComputePrecision::kBf16;
  EXPECT_LT(ErrorOverPrefillAndDecode(options), kBf16ComputeTolerance);
}

// int8 weights (--weight_dtype=int8): every linear layer's weight rounded to
// 1/254 of its row's largest |w|, and its input to 1/254 of the token's
// largest |x| (each product within 1/127 of sum |x w| in the worst case,
// about 1e-2 for random signs over these short rows), in each of 3 layers
// and the lm_head, over an fp16 cache; prefill (57 rows: oneDNN) and decode
// (1 row: the VNNI kernel). Observed: 2.2e-2 of the row scale; the tolerance
// is 6e-2. A wrong scale or offset moves the logits by far more.
constexpr double kInt8WeightTolerance = 6e-2;

TEST(LlamaModelTest, Int8WeightsStayCloseToTheReference) {
  LlamaModelOptions options;
  options.weight_dtype = kernels::WeightDtype::kInt8;
  EXPECT_LT(ErrorOverPrefillAndDecode(options), kInt8WeightTolerance);
}

TEST(LlamaModelTest, RejectsInconsistentShapes) {
  testing::RandomLlama m = testing::MakeRandomLlama(false, false, 16);
  m.shape.num_heads = 5;  // Not a multiple of 2 KV heads.
  EXPECT_EQ(LlamaModel::Create(m.shape, m.weights, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  testing::RandomLlama missing = testing::MakeRandomLlama(false, false, 16);
  missing.weights.layers[1].up = TensorRef();
  auto status = LlamaModel::Create(missing.shape, missing.weights, {}).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("layers.1.mlp"), std::string::npos) << status;
}

}  // namespace
}  // namespace longctx
