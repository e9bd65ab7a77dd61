#include "model/testing/random_llama.h"

#include <cmath>
#include <random>

namespace longctx::testing {
namespace {

const float* Add(RandomLlama& m, std::mt19937& rng, size_t n, float scale,
                 float offset = 0.f) {
  std::normal_distribution<float> normal(0.f, 1.f);
  m.storage.emplace_back(n);
  for (float& v : m.storage.back()) v = offset + scale * normal(rng);
  return m.storage.back().data();
}

TensorRef Ref(const float* p) { return {p, kernels::DType::kF32}; }

}  // namespace

RandomLlama MakeRandomLlama(bool biases, bool tied, uint32_t seed) {
  LlamaShape s;
  s.hidden_size = 40;
  s.intermediate_size = 72;
  s.num_layers = 3;
  s.num_heads = 6;
  s.num_kv_heads = 2;
  s.head_dim = 12;
  s.vocab_size = 97;
  s.rms_norm_eps = 1e-5f;
  s.rope.theta = 10000.0;
  return MakeRandomLlamaOfShape(s, biases, tied, seed);
}

RandomLlama MakeRandomLlamaOfShape(const LlamaShape& shape, bool biases,
                                   bool tied, uint32_t seed) {
  RandomLlama m;
  m.shape = shape;
  const LlamaShape& s = m.shape;
  // Every tensor's storage is reserved up front: weights point into it.
  m.storage.reserve(static_cast<size_t>(16 * s.num_layers + 8));
  std::mt19937 rng(seed);
  const int h = s.hidden_size, q = s.num_heads * s.head_dim,
            kv = s.num_kv_heads * s.head_dim, f = s.intermediate_size;
  m.weights.embed_tokens = Ref(Add(m, rng, size_t(s.vocab_size) * h, 1.0f));
  for (int l = 0; l < s.num_layers; ++l) {
    LlamaWeights::Layer layer;
    layer.input_norm = Ref(Add(m, rng, h, 0.1f, 1.0f));
    layer.q = Ref(Add(m, rng, size_t(q) * h, 1.0f / std::sqrt(h)));
    layer.k = Ref(Add(m, rng, size_t(kv) * h, 1.0f / std::sqrt(h)));
    layer.v = Ref(Add(m, rng, size_t(kv) * h, 1.0f / std::sqrt(h)));
    layer.o = Ref(Add(m, rng, size_t(h) * q, 1.0f / std::sqrt(q)));
    if (biases) {
      layer.q_bias = Ref(Add(m, rng, q, 0.1f));
      layer.k_bias = Ref(Add(m, rng, kv, 0.1f));
      layer.v_bias = Ref(Add(m, rng, kv, 0.1f));
    }
    layer.post_attention_norm = Ref(Add(m, rng, h, 0.1f, 1.0f));
    layer.gate = Ref(Add(m, rng, size_t(f) * h, 1.0f / std::sqrt(h)));
    layer.up = Ref(Add(m, rng, size_t(f) * h, 1.0f / std::sqrt(h)));
    layer.down = Ref(Add(m, rng, size_t(h) * f, 1.0f / std::sqrt(f)));
    m.weights.layers.push_back(layer);
  }
  m.weights.final_norm = Ref(Add(m, rng, h, 0.1f, 1.0f));
  if (!tied) {
    m.weights.lm_head =
        Ref(Add(m, rng, size_t(s.vocab_size) * h, 1.0f / std::sqrt(h)));
  }
  return m;
}

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % vocab);
  return tokens;
}

}  // namespace longctx::testing
