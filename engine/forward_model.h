// ForwardModel: the interface between the engine's scheduler and a model that
// runs one forward step over a batch of sequence spans with a paged KV cache.
#ifndef LONGCTX_ENGINE_FORWARD_MODEL_H_
#define LONGCTX_ENGINE_FORWARD_MODEL_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/kv_block_pool.h"

namespace longctx {

// SeqSpan is a run of consecutive tokens of one sequence to push through the
// model.
struct SeqSpan {
  // The tokens, at absolute positions [start, start + tokens.size()).
  absl::Span<const int32_t> tokens;
  int start = 0;
  // The sequence's KV blocks (block i holds positions [i*B, (i+1)*B)); they
  // must cover every position up to start + tokens.size(). KV of positions <
  // start is already in them; the model writes the KV of this span's tokens.
  absl::Span<const int> blocks;
  // Whether the logits of the span's last token are wanted.
  bool want_logits = false;
};

// ForwardModel runs the model. Implementations are used from one thread at a
// time.
class ForwardModel {
 public:
  virtual ~ForwardModel() = default;

  virtual int vocab_size() const = 0;

  // Forward runs every span through every layer, writing KV into `pool`, and
  // writes one row of vocab_size() logits per span with want_logits (in span
  // order) to `logits`, which has room for that many rows.
  virtual absl::Status Forward(absl::Span<const SeqSpan> spans,
                               KvBlockPool& pool, float* logits) = 0;

  // logits_buffer may return host memory for `rows` rows of logits that
  // Forward fills fastest (page-locked, for a GPU's copy), valid until the
  // next call of either; null (the default) means the caller's own buffer
  // is as good.
  virtual float* logits_buffer(int64_t rows) {
    (void)rows;
    return nullptr;
  }

  // health is OK while the model can compute; otherwise the error that broke
  // it for good (a GPU fault), after which Forward fails every call. The
  // worker stops serving then.
  virtual absl::Status health() const { return absl::OkStatus(); }
};

}  // namespace longctx

#endif  // LONGCTX_ENGINE_FORWARD_MODEL_H_
