// EngineMetrics: what a worker's engine reports to Prometheus.
#ifndef LONGCTX_ENGINE_ENGINE_METRICS_H_
#define LONGCTX_ENGINE_ENGINE_METRICS_H_

#include "prometheus/counter.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace longctx {

// EngineMetrics registers the engine's metric families in `registry`, which
// must outlive it. The metric objects are thread-safe.
struct EngineMetrics {
  explicit EngineMetrics(prometheus::Registry& registry);

  prometheus::Gauge& running;         // Sequences in the running batch.
  prometheus::Gauge& restoring;       // Sequences waiting for their restore.
  prometheus::Gauge& waiting;         // Requests queued.
  prometheus::Gauge& kv_blocks_used;  // KV blocks allocated.
  prometheus::Gauge& kv_blocks_capacity;  // KV blocks in the pool.
  prometheus::Counter& prefill_tokens;    // Prompt tokens computed.
  prometheus::Counter& decode_tokens;     // Tokens generated.
  prometheus::Histogram& prefill_step;  // Seconds of steps with prompt tokens.
  prometheus::Histogram& decode_step;   // Seconds of decode-only steps.
  prometheus::Histogram& queue_time;    // Seconds from submit to admission.
  // The in-memory prefix cache: prompt blocks and tokens shared from it (not
  // computed, not read from the store), blocks it holds, blocks it evicted.
  prometheus::Counter& prefix_cache_hit_blocks;
  prometheus::Counter& prefix_cache_hit_tokens;
  prometheus::Gauge& prefix_cache_blocks;
  prometheus::Counter& prefix_cache_evicted_blocks;
  // Requests that left the queue unstarted (--max_queue_wait or deadline).
  prometheus::Counter& queue_timeouts;
};

}  // namespace longctx

#endif  // LONGCTX_ENGINE_ENGINE_METRICS_H_
