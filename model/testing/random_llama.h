// Random Llama-family models held in memory, for tests of the model and engine.
#ifndef LONGCTX_MODEL_TESTING_RANDOM_LLAMA_H_
#define LONGCTX_MODEL_TESTING_RANDOM_LLAMA_H_

#include <cstdint>
#include <vector>

#include "model/llama_model.h"

namespace longctx::testing {

// RandomLlama is a small random model: awkward sizes (head_dim 12, 6 heads over
// 2 KV heads, hidden 40, FFN 72, vocab 97, 3 layers) so that no tile size
// divides them, and weights scaled like a trained model's (norms near 1,
// 1/sqrt(fan_in)).
struct RandomLlama {
  LlamaShape shape;
  std::vector<std::vector<float>> storage;  // Every tensor, as fp32.
  LlamaWeights weights;                     // Points into storage.
};

// MakeRandomLlama makes one; the same arguments give the same model.
RandomLlama MakeRandomLlama(bool biases, bool tied, uint32_t seed);

// MakeRandomLlamaOfShape makes one of `shape` (its sizes, eps and rope).
RandomLlama MakeRandomLlamaOfShape(const LlamaShape& shape, bool biases,
                                   bool tied, uint32_t seed);

// RandomTokens returns n ids in [0, vocab).
std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed);

}  // namespace longctx::testing

#endif  // LONGCTX_MODEL_TESTING_RANDOM_LLAMA_H_
