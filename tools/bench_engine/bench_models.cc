#include "tools/bench_engine/bench_models.h"

#include <cmath>

namespace longctx {

using kernels::DType;

namespace {

// Values with the given mean and standard deviation (uniform, from a
// splitmix64 stream: fast enough for the billion-parameter shape L).
TensorRef Random(BenchModel& m, uint64_t& state, size_t n, DType dtype,
                 float scale, float offset = 0) {
  std::vector<float> values(n);
  for (float& v : values) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    // Uniform in [-sqrt(3), sqrt(3)): unit variance.
    const float u = static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    v = offset + scale * 1.7320508f * (2.0f * u - 1.0f);
  }
  m.storage.emplace_back(n * kernels::DTypeSize(dtype));
  kernels::ConvertFromF32(values.data(), dtype, m.storage.back().data(), n);
  return {m.storage.back().data(), dtype};
}

}  // namespace

LlamaShape Shape(const std::string& name) {
  LlamaShape s;
  s.vocab_size = 32000;
  if (name == "S") {
    s.hidden_size = 512, s.num_layers = 8, s.num_heads = 8, s.num_kv_heads = 4,
    s.intermediate_size = 1536;
  } else if (name == "L") {
    s.hidden_size = 2048, s.num_layers = 16, s.num_heads = 32,
    s.num_kv_heads = 8, s.intermediate_size = 8192, s.vocab_size = 128256;
  } else {
    s.hidden_size = 1024, s.num_layers = 12, s.num_heads = 16,
    s.num_kv_heads = 4, s.intermediate_size = 2816;
  }
  s.head_dim = s.hidden_size / s.num_heads;
  s.rope.theta = 500000.0;
  return s;
}

std::unique_ptr<BenchModel> MakeModel(const std::string& name, DType dtype) {
  auto m = std::make_unique<BenchModel>();
  m->shape = Shape(name);
  const LlamaShape& s = m->shape;
  uint64_t rng = 1;
  const size_t h = s.hidden_size, q = s.num_heads * s.head_dim,
               kv = s.num_kv_heads * s.head_dim, f = s.intermediate_size;
  const float wscale = 1.0f / std::sqrt(float(h));
  m->weights.embed_tokens = Random(*m, rng, s.vocab_size * h, dtype, 1.0f);
  for (int l = 0; l < s.num_layers; ++l) {
    LlamaWeights::Layer layer;
    layer.input_norm = Random(*m, rng, h, DType::kF32, 0.05f, 1.0f);
    layer.post_attention_norm = Random(*m, rng, h, DType::kF32, 0.05f, 1.0f);
    layer.q = Random(*m, rng, q * h, dtype, wscale);
    layer.k = Random(*m, rng, kv * h, dtype, wscale);
    layer.v = Random(*m, rng, kv * h, dtype, wscale);
    layer.o = Random(*m, rng, h * q, dtype, wscale);
    layer.gate = Random(*m, rng, f * h, dtype, wscale);
    layer.up = Random(*m, rng, f * h, dtype, wscale);
    layer.down = Random(*m, rng, h * f, dtype, 1.0f / std::sqrt(float(f)));
    m->weights.layers.push_back(layer);
  }
  m->weights.final_norm = Random(*m, rng, h, DType::kF32, 0.05f, 1.0f);
  m->weights.lm_head = Random(*m, rng, s.vocab_size * h, dtype, wscale);
  return m;
}

}  // namespace longctx
