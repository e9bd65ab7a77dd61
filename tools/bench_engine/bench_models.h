// Random Llama models of the benchmark shapes, made in memory (speed does not
// depend on weight values), for the tools that measure the engine.
#ifndef LONGCTX_TOOLS_BENCH_ENGINE_BENCH_MODELS_H_
#define LONGCTX_TOOLS_BENCH_ENGINE_BENCH_MODELS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/dtype.h"
#include "model/llama_model.h"

namespace longctx {

// BenchModel owns the weights that `weights` points into.
struct BenchModel {
  LlamaShape shape;
  std::vector<std::vector<uint8_t>> storage;
  LlamaWeights weights;
};

// Shape returns "S" (hidden 512, 8 layers, 8 heads, 4 KV heads, FFN 1536),
// "L" (hidden 2048, 16 layers, 32 heads, 8 KV heads, FFN 8192, vocabulary
// 128256: the GPU benchmark's) or, for any other name, "M" (hidden 1024, 12
// layers, 16 heads, 4 KV heads, FFN 2816); vocabulary 32000 but for L.
LlamaShape Shape(const std::string& name);

// MakeModel makes a random model of shape `name` with weights of `dtype`.
std::unique_ptr<BenchModel> MakeModel(const std::string& name,
                                      kernels::DType dtype);

}  // namespace longctx

#endif  // LONGCTX_TOOLS_BENCH_ENGINE_BENCH_MODELS_H_
