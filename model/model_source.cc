#include "model/model_source.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "model/folder/model_weights.h"

namespace longctx {
namespace {

TensorRef Ref(const WeightTensor& t) {
  if (!t.present()) return TensorRef();
  return {t.data, t.dtype};
}

}  // namespace

absl::StatusOr<ModelSource> OpenModelSource(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError(
        "--model is required: a Hugging Face model folder (make one with "
        "tools/make_tiny_model)");
  }
  absl::StatusOr<std::unique_ptr<ModelWeights>> loaded =
      ModelWeights::Load(dir);
  if (!loaded.ok()) {
    return absl::Status(
        loaded.status().code(),
        absl::StrCat("--model=", dir, ": ", loaded.status().message()));
  }
  std::shared_ptr<const ModelWeights> weights = *std::move(loaded);
  const ModelConfig& config = weights->config();

  ModelSource source;
  source.dir = dir;
  source.architecture = config.architecture;
  source.fingerprint = weights->fingerprint();
  source.fingerprint_hex = weights->fingerprint().ToHex();
  LlamaShape& shape = source.shape;
  shape.hidden_size = config.hidden_size;
  shape.intermediate_size = config.intermediate_size;
  shape.num_layers = config.num_hidden_layers;
  shape.num_heads = config.num_attention_heads;
  shape.num_kv_heads = config.num_key_value_heads;
  shape.head_dim = config.head_dim;
  shape.vocab_size = config.vocab_size;
  shape.rms_norm_eps = static_cast<float>(config.rms_norm_eps);
  shape.rope.head_dim = config.head_dim;
  shape.rope.theta = config.rope_theta;
  if (config.rope_scaling.has_value()) {
    shape.rope.use_llama3_scaling = true;
    shape.rope.llama3_scaling.factor =
        static_cast<float>(config.rope_scaling->factor);
    shape.rope.llama3_scaling.low_freq_factor =
        static_cast<float>(config.rope_scaling->low_freq_factor);
    shape.rope.llama3_scaling.high_freq_factor =
        static_cast<float>(config.rope_scaling->high_freq_factor);
    shape.rope.llama3_scaling.original_max_position_embeddings =
        config.rope_scaling->original_max_position_embeddings;
  }

  LlamaWeights& w = source.weights;
  w.embed_tokens = Ref(weights->embed_tokens());
  for (const LayerWeights& layer : weights->layers()) {
    LlamaWeights::Layer out;
    out.input_norm = Ref(layer.input_layernorm);
    out.q = Ref(layer.q_proj);
    out.k = Ref(layer.k_proj);
    out.v = Ref(layer.v_proj);
    out.o = Ref(layer.o_proj);
    out.q_bias = Ref(layer.q_bias);
    out.k_bias = Ref(layer.k_bias);
    out.v_bias = Ref(layer.v_bias);
    out.post_attention_norm = Ref(layer.post_attention_layernorm);
    out.gate = Ref(layer.gate_proj);
    out.up = Ref(layer.up_proj);
    out.down = Ref(layer.down_proj);
    w.layers.push_back(out);
  }
  w.final_norm = Ref(weights->final_norm());
  w.lm_head = Ref(weights->lm_head());
  source.keep_alive = std::move(weights);
  return source;
}

}  // namespace longctx
