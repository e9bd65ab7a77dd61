#include "tools/bench_engine/bench_models.h"

#include <cmath>
#include <random>

namespace longctx {

using kernels::DType;

namespace {

TensorRef Random(BenchModel& m, std::mt19937& rng, size_t n, DType dtype,
                 float scale, float offset = 0) {
  std::normal_distribution<float> normal(0, 1);
  std::vector<float> values(n);
  for (float& v : values) v = offset + scale * normal(rng);
  m.storage.emplace_back(n * kernels::DTypeSize(dtype));
  kernels::ConvertFromF32(values.data(), dtype, m.storage.back().data(), n);
  return {m.storage.back().data(), dtype};
}

}  // namespace

LlamaShape Shape(const std::string& name) {
  LlamaShape s;
  if (name == "S") {
    s.hidden_size = 512, s.num_layers = 8, s.num_heads = 8, s.num_kv_heads = 4,
    s.intermediate_size = 1536;
  } else {
    s.hidden_size = 1024, s.num_layers = 12, s.num_heads = 16,
    s.num_kv_heads = 4, s.intermediate_size = 2816;
  }
  s.head_dim = s.hidden_size / s.num_heads;
  s.vocab_size = 32000;
  s.rope.theta = 500000.0;
  return s;
}

std::unique_ptr<BenchModel> MakeModel(const std::string& name, DType dtype) {
  auto m = std::make_unique<BenchModel>();
  m->shape = Shape(name);
  const LlamaShape& s = m->shape;
  std::mt19937 rng(1);
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
