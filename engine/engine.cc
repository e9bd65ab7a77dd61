#include "engine/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/sampler.h"
#include "kvblock/block_keys.h"

namespace longctx {

struct Engine::Sequence {
  int64_t id = 0;
  GenerateParams params;  // Its prompt moved to `tokens`.
  TokenSink sink;
  std::vector<int32_t> tokens;  // Prompt, then generated tokens.
  int prompt_tokens = 0;
  // Reserved for prompt + max_new_tokens; the first hot_blocks are shared
  // from the prefix cache, the others are the sequence's own.
  std::vector<int> blocks;
  int computed = 0;  // Tokens whose KV is in `blocks`.
  int generated = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  bool cancelled = false;
  absl::Time submitted = absl::Now();
  // Keys of the prompt's full blocks in the request's namespace; empty when
  // the request uses no cache.
  std::vector<BlockKey> keys;
  int hot_blocks = 0;      // Leading blocks shared from the prefix cache.
  int stored_blocks = 0;   // Blocks after those, restored from the store.
  int restorable = 0;      // Blocks the restore asks the store for.
  int published_upto = 0;  // Blocks already considered for the cache.
  int offloaded_upto = 0;  // Blocks already considered for offload.
  int cached_tokens = 0;

  int prompt_size() const { return prompt_tokens; }
  bool prefilling() const { return computed < prompt_size(); }
};

Engine::Engine(ForwardModel* model, KvBlockPool* pool,
               const EngineOptions& options)
    : model_(model), pool_(pool), options_(options) {
  evicted_seen_ = pool_->evicted_blocks();
  thread_ = std::thread([this] { Loop(); });
  if (options_.offloader != nullptr) {
    restorer_ = std::thread([this] { RestoreLoop(); });
  }
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  // Waits for the restore in flight: its blocks are being written.
  if (restorer_.joinable()) restorer_.join();
  // Whatever did not finish is cancelled.
  const absl::Status shutdown =
      absl::CancelledError("the worker is shutting down");
  for (auto& seq : running_) {
    Finish(*seq, FinishReason::kNotFinished, shutdown);
  }
  for (auto& seq : restoring_) {
    Finish(*seq, FinishReason::kNotFinished, shutdown);
  }
  absl::MutexLock lock(&mu_);
  for (auto& seq : waiting_) {
    TokenEvent event;
    event.finished = true;
    event.status = shutdown;
    seq->sink(std::move(event));
  }
}

void Engine::CacheCompletedBlocks(Sequence& seq) {
  if (!seq.params.cache_write) return;
  const int b = pool_->layout().block_size;
  const int full =
      std::min(seq.computed / b, static_cast<int>(seq.keys.size()));
  if (options_.prefix_cache) {
    for (int i = seq.published_upto; i < full; ++i) {
      // A block restored from the store is known to be there.
      if (pool_->Publish(seq.keys[i].key, seq.blocks[i]) &&
          i < seq.hot_blocks + seq.stored_blocks) {
        pool_->MarkStored(seq.keys[i].key);
      }
    }
    seq.published_upto = std::max(seq.published_upto, full);
  }
  if (options_.offloader != nullptr) {
    for (int i = seq.offloaded_upto; i < full; ++i) {
      options_.offloader->Offload(seq.keys[i], seq.blocks[i], b);
    }
    seq.offloaded_upto = std::max(seq.offloaded_upto, full);
  }
}

int Engine::BlocksFor(int tokens) const {
  const int b = pool_->layout().block_size;
  return (tokens + b - 1) / b;
}

absl::StatusOr<int64_t> Engine::Submit(GenerateParams params, TokenSink sink) {
  // In 64 bits: a caller's max_new_tokens near INT_MAX must not wrap.
  const int64_t total = static_cast<int64_t>(params.prompt.size()) +
                        std::max(0, params.max_new_tokens);
  const int64_t block_size = pool_->layout().block_size;
  const int64_t needed = (total + block_size - 1) / block_size;
  if (needed > pool_->capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt (", params.prompt.size(), " tokens) + max_new_tokens (",
        params.max_new_tokens, ") needs ", needed, " KV blocks of ",
        pool_->layout().block_size, " tokens; this worker holds ",
        pool_->capacity(), " (--kv_cache_bytes)"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->prompt_tokens = static_cast<int>(params.prompt.size());
  seq->tokens = std::move(params.prompt);
  seq->params = std::move(params);
  seq->sink = std::move(sink);
  // The keys are hashed here, on the caller's thread, not the engine's.
  if ((seq->params.cache_read || seq->params.cache_write) &&
      (options_.prefix_cache || options_.offloader != nullptr)) {
    seq->keys = ChainedBlockKeys(
        BlockKeySeed(options_.fingerprint, seq->params.cache_namespace),
        seq->tokens, pool_->layout().block_size);
  }
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("the worker is shutting down");
  if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the worker's queue is full (", options_.max_waiting,
                     " waiting requests, --max_queue)"));
  }
  seq->id = next_id_++;
  int64_t id = seq->id;
  waiting_.push_back(std::move(seq));
  ++epoch_;
  return id;
}

void Engine::Cancel(int64_t id) {
  absl::MutexLock lock(&mu_);
  cancelled_.push_back(id);
  ++epoch_;
}

int Engine::running() const {
  absl::MutexLock lock(&mu_);
  return running_count_;
}

int Engine::waiting() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(waiting_.size());
}

void Engine::Loop() {
  uint64_t seen = 0;
  bool idle = false;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (idle) {
        auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || epoch_ != seen;
        };
        if (waiting_.empty()) {
          mu_.Await(absl::Condition(&changed));
        } else {
          // The queue's head waits for blocks that an offload in progress
          // holds; nothing signals their release, so look again soon.
          mu_.AwaitWithTimeout(absl::Condition(&changed),
                               absl::Milliseconds(5));
        }
      }
      if (stopping_) return;
      seen = epoch_;
    }
    step_started_ns_.store(absl::ToUnixNanos(absl::Now()),
                           std::memory_order_relaxed);
    idle = !Step();
    step_started_ns_.store(0, std::memory_order_relaxed);
  }
}

absl::Duration Engine::StepAge() const {
  const int64_t started = step_started_ns_.load(std::memory_order_relaxed);
  if (started == 0) return absl::ZeroDuration();
  return std::max(absl::ZeroDuration(),
                  absl::Now() - absl::FromUnixNanos(started));
}

void Engine::RestoreLoop() {
  while (true) {
    Sequence* seq;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !to_restore_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      seq = to_restore_.front();
      to_restore_.pop_front();
    }
    // The engine thread leaves the sequence alone until the result is posted.
    const int first = seq->hot_blocks;
    const int count = seq->restorable - first;
    int restored = options_.offloader->Restore(
        absl::MakeConstSpan(seq->keys).subspan(first, count),
        absl::MakeConstSpan(seq->blocks).subspan(first, count));
    absl::MutexLock lock(&mu_);
    restored_.push_back({seq, restored});
    ++epoch_;
  }
}

void Engine::Finish(Sequence& seq, FinishReason reason, absl::Status status) {
  // The sequence's own blocks go back first, in order; then the cached
  // prefix, last block first: its leading blocks are then the most recently
  // released, the last the cache evicts, so a cut prefix stays usable.
  const int cached =
      std::min(seq.published_upto, static_cast<int>(seq.blocks.size()));
  for (size_t i = cached; i < seq.blocks.size(); ++i) {
    pool_->Unref(seq.blocks[i]);
  }
  for (int i = cached - 1; i >= 0; --i) pool_->Unref(seq.blocks[i]);
  seq.blocks.clear();
  TokenEvent event;
  event.finished = true;
  event.finish_reason = reason;
  event.cached_tokens = seq.cached_tokens;
  event.memory_cached_tokens = seq.hot_blocks * pool_->layout().block_size;
  event.prefill_seconds = seq.prefill_seconds;
  event.decode_seconds = seq.decode_seconds;
  event.status = std::move(status);
  seq.sink(std::move(event));
  seq.cancelled = true;  // Marks it for removal from running_.
}

std::vector<std::unique_ptr<Engine::Sequence>> Engine::AdmitLocked() {
  std::vector<std::unique_ptr<Sequence>> admitted;
  const int b = pool_->layout().block_size;
  const absl::Time now = absl::Now();
  // First come first served, when the whole reservation fits; a request that
  // does not fit lets those behind it that do go first, until it has waited
  // max_bypass_wait (then it holds the queue until it fits).
  size_t i = 0;
  while (i < waiting_.size() &&
         static_cast<int>(running_.size() + restoring_.size() +
                          admitted.size()) < options_.max_running) {
    Sequence& next = *waiting_[i];
    // The cached prefix: full prompt blocks the pool holds, each ending before
    // the prompt's last token. That token is always computed (for its logits),
    // and its block must be the sequence's own: shared blocks are never
    // written.
    std::vector<int> shared;
    if (options_.prefix_cache && next.params.cache_read) {
      const int shareable = std::min(static_cast<int>(next.keys.size()),
                                     (next.prompt_size() - 1) / b);
      for (int i = 0; i < shareable; ++i) {
        const int block = pool_->Lookup(next.keys[i].key);
        if (block < 0) break;
        shared.push_back(block);
      }
    }
    const int needed =
        BlocksFor(next.prompt_size() + next.params.max_new_tokens) -
        static_cast<int>(shared.size());
    // Cached blocks nobody uses count as free: Allocate evicts them.
    if (needed > pool_->free_blocks()) {
      for (auto it = shared.rbegin(); it != shared.rend(); ++it) {
        pool_->Unref(*it);
      }
      if (now - next.submitted >= options_.max_bypass_wait) break;
      ++i;
      continue;
    }
    next.blocks = std::move(shared);
    next.hot_blocks = static_cast<int>(next.blocks.size());
    for (int i = 0; i < needed; ++i) next.blocks.push_back(*pool_->Allocate());
    next.computed = next.hot_blocks * b;
    next.cached_tokens = next.computed;
    next.published_upto = next.hot_blocks;
    next.offloaded_upto = next.hot_blocks;
    if (options_.metrics != nullptr) {
      options_.metrics->queue_time.Observe(
          absl::ToDoubleSeconds(absl::Now() - next.submitted));
      options_.metrics->prefix_cache_hit_blocks.Increment(next.hot_blocks);
      options_.metrics->prefix_cache_hit_tokens.Increment(next.computed);
    }
    admitted.push_back(std::move(waiting_[i]));
    waiting_.erase(waiting_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return admitted;
}

void Engine::Start(std::unique_ptr<Sequence> seq) {
  // Every stored full block after the cached ones is asked for, the one with
  // the prompt's last token too: that token is then computed again, rewriting
  // its own KV in the sequence's own block.
  if (options_.offloader != nullptr && seq->params.cache_read) {
    seq->restorable = std::min(static_cast<int>(seq->keys.size()),
                               seq->prompt_size() / pool_->layout().block_size);
  }
  if (seq->restorable > seq->hot_blocks) {
    {
      absl::MutexLock lock(&mu_);
      to_restore_.push_back(seq.get());
    }
    restoring_.push_back(std::move(seq));
    return;
  }
  running_.push_back(std::move(seq));
}

bool Engine::Step() {
  StepInputs in;
  {
    absl::MutexLock lock(&mu_);
    in = TakeInputsLocked();
  }
  bool changed = in.changed;
  FailExpired(in.expired);
  // Finished restores join the batch (or end, if cancelled meanwhile).
  for (const Restored& done : in.restored) JoinRestored(done);
  for (auto& seq : in.admitted) Start(std::move(seq));
  for (auto& seq : in.cancelled_waiting) {
    TokenEvent event;
    event.finished = true;
    event.status = absl::CancelledError("the request was cancelled");
    seq->sink(std::move(event));
  }
  for (auto& seq : running_) {
    if (seq->cancelled && !seq->blocks.empty()) {
      Finish(*seq, FinishReason::kNotFinished,
             absl::CancelledError("the request was cancelled"));
    }
  }
  EraseFinished();

  Batch batch = BuildBatch();
  if (batch.spans.empty()) {
    absl::MutexLock lock(&mu_);
    UpdateGauges();
    return changed;
  }
  RunBatch(batch);
  EraseFinished();
  absl::MutexLock lock(&mu_);
  UpdateGauges();
  return true;
}

Engine::StepInputs Engine::TakeInputsLocked() {
  StepInputs in;
  // Cancellations, of running, restoring and waiting requests.
  for (int64_t id : cancelled_) {
    for (auto& seq : running_) {
      if (seq->id == id) seq->cancelled = true;
    }
    for (auto& seq : restoring_) {
      if (seq->id == id) seq->cancelled = true;
    }
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if ((*it)->id == id) {
        in.cancelled_waiting.push_back(std::move(*it));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  in.changed = !cancelled_.empty();
  cancelled_.clear();
  in.restored.swap(restored_);
  in.admitted = AdmitLocked();
  // What could not start now and has waited too long leaves the queue.
  const absl::Time now = absl::Now();
  for (auto it = waiting_.begin(); it != waiting_.end();) {
    const Sequence& seq = **it;
    if (now >= std::min(seq.submitted + options_.max_queue_wait,
                        seq.params.deadline)) {
      in.expired.push_back(std::move(*it));
      it = waiting_.erase(it);
    } else {
      ++it;
    }
  }
  in.changed = in.changed || !in.restored.empty() || !in.admitted.empty() ||
               !in.expired.empty();
  return in;
}

void Engine::FailExpired(std::vector<std::unique_ptr<Sequence>>& expired) {
  for (auto& seq : expired) {
    const absl::Duration waited = absl::Now() - seq->submitted;
    TokenEvent event;
    event.finished = true;
    if (seq->params.deadline < seq->submitted + options_.max_queue_wait) {
      event.status = absl::DeadlineExceededError(absl::StrCat(
          "the request's deadline passed while it waited to start (",
          absl::FormatDuration(waited), " in the worker's queue)"));
    } else {
      event.status = absl::ResourceExhaustedError(
          absl::StrCat("the request waited ", absl::FormatDuration(waited),
                       " in the worker's queue without starting; the limit is ",
                       absl::FormatDuration(options_.max_queue_wait),
                       " (--max_queue_wait)"));
    }
    if (options_.metrics != nullptr)
      options_.metrics->queue_timeouts.Increment();
    seq->sink(std::move(event));
  }
}

void Engine::JoinRestored(const Restored& done) {
  const int b = pool_->layout().block_size;
  Sequence& seq = *done.seq;
  seq.stored_blocks = done.blocks;
  const int ready = seq.hot_blocks + seq.stored_blocks;
  seq.computed = std::min(ready * b, seq.prompt_size() - 1);
  seq.cached_tokens = seq.computed;
  seq.offloaded_upto = ready;
  if (!seq.cancelled) CacheCompletedBlocks(seq);
  auto it = std::find_if(restoring_.begin(), restoring_.end(),
                         [&](const auto& s) { return s.get() == &seq; });
  running_.push_back(std::move(*it));
  restoring_.erase(it);
}

void Engine::EraseFinished() {
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& s) { return s->cancelled; }),
                 running_.end());
}

Engine::Batch Engine::BuildBatch() {
  // Every decoding sequence's newest token, then prompt chunks up to the
  // step's prefill budget, oldest request first.
  Batch batch;
  for (auto& seq : running_) {
    if (seq->prefilling()) continue;
    SeqSpan span;
    span.tokens = absl::MakeConstSpan(seq->tokens).subspan(seq->computed);
    span.start = seq->computed;
    span.blocks = seq->blocks;
    span.want_logits = true;
    batch.spans.push_back(span);
    batch.owners.push_back(seq.get());
    batch.is_prefill.push_back(false);
  }
  int budget = options_.prefill_chunk_tokens;
  for (auto& seq : running_) {
    if (!seq->prefilling() || budget <= 0) continue;
    const int n = std::min(budget, seq->prompt_size() - seq->computed);
    SeqSpan span;
    span.tokens = absl::MakeConstSpan(seq->tokens).subspan(seq->computed, n);
    span.start = seq->computed;
    span.blocks = seq->blocks;
    span.want_logits = seq->computed + n == seq->prompt_size();
    batch.spans.push_back(span);
    batch.owners.push_back(seq.get());
    batch.is_prefill.push_back(true);
    budget -= n;
  }
  return batch;
}

void Engine::RunBatch(const Batch& batch) {
  int rows = 0;
  for (const SeqSpan& span : batch.spans) rows += span.want_logits ? 1 : 0;
  const size_t vocab = static_cast<size_t>(model_->vocab_size());
  float* out = model_->logits_buffer(rows);
  if (out == nullptr) {
    if (logits_.size() < rows * vocab) logits_.resize(rows * vocab);
    out = logits_.data();
  }
  const absl::Time start = absl::Now();
  absl::Status status = model_->Forward(batch.spans, *pool_, out);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (options_.metrics != nullptr) {
    double prefilled = 0, decoded = 0;
    for (size_t i = 0; i < batch.spans.size(); ++i) {
      (batch.is_prefill[i] ? prefilled : decoded) +=
          static_cast<double>(batch.spans[i].tokens.size());
    }
    options_.metrics->prefill_tokens.Increment(prefilled);
    options_.metrics->decode_tokens.Increment(decoded);
    (prefilled > 0 ? options_.metrics->prefill_step
                   : options_.metrics->decode_step)
        .Observe(seconds);
  }
  if (!status.ok()) {
    FailBatch(batch, status);
    return;
  }
  int row = 0;
  for (size_t i = 0; i < batch.spans.size(); ++i) {
    Sequence& seq = *batch.owners[i];
    seq.computed += static_cast<int>(batch.spans[i].tokens.size());
    if (batch.is_prefill[i]) CacheCompletedBlocks(seq);
    (batch.is_prefill[i] ? seq.prefill_seconds : seq.decode_seconds) += seconds;
    if (!batch.spans[i].want_logits) continue;
    EmitToken(seq, out + static_cast<size_t>(row++) * vocab);
  }
}

void Engine::FailBatch(const Batch& batch, const absl::Status& status) {
  // UNAVAILABLE: the model lost state it keeps elsewhere (a rank of the
  // group, holding part of every sequence's KV, went away): every running
  // sequence fails, not only this step's. So does a model broken for good
  // (health not OK, e.g. a GPU fault). Anything else fails the step's.
  const bool lost_kv = absl::IsUnavailable(status);
  const absl::Status failure(
      lost_kv ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal,
      absl::StrCat("forward pass failed: ", status.message()));
  const absl::Status health = model_->health();
  if (!health.ok() && !model_failed_) {
    model_failed_ = true;
    if (options_.on_model_failure) options_.on_model_failure(health);
  }
  if (lost_kv || !health.ok()) {
    for (auto& seq : running_) {
      if (!seq->cancelled) Finish(*seq, FinishReason::kNotFinished, failure);
    }
  } else {
    for (Sequence* seq : batch.owners) {
      Finish(*seq, FinishReason::kNotFinished, failure);
    }
  }
}

void Engine::EmitToken(Sequence& seq, const float* logits) {
  TokenEvent event;
  TokenLogprob logprob;
  absl::StatusOr<int32_t> sampled =
      SampleNextToken(logits, model_->vocab_size(), seq.params, seq.generated,
                      seq.params.logprobs ? &logprob : nullptr);
  if (!sampled.ok()) {
    Finish(seq, FinishReason::kNotFinished,
           absl::InternalError(
               absl::StrCat("sampling failed: ", sampled.status().message())));
    return;
  }
  const int32_t token = *sampled;
  seq.tokens.push_back(token);
  ++seq.generated;
  event.tokens.push_back(token);
  if (seq.params.logprobs) event.logprobs.push_back(std::move(logprob));
  event.prefill_seconds = seq.prefill_seconds;
  event.cached_tokens = seq.cached_tokens;
  event.memory_cached_tokens = seq.hot_blocks * pool_->layout().block_size;
  seq.sink(std::move(event));
  const auto& stops = seq.params.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    Finish(seq, FinishReason::kStopToken, absl::OkStatus());
  } else if (seq.generated >= seq.params.max_new_tokens) {
    Finish(seq, FinishReason::kLength, absl::OkStatus());
  }
}

void Engine::UpdateGauges() {
  running_count_ = static_cast<int>(running_.size() + restoring_.size());
  if (options_.metrics == nullptr) return;
  EngineMetrics& m = *options_.metrics;
  m.running.Set(static_cast<double>(running_.size()));
  m.restoring.Set(static_cast<double>(restoring_.size()));
  m.waiting.Set(static_cast<double>(waiting_.size()));
  m.kv_blocks_used.Set(pool_->used_blocks());
  m.kv_blocks_capacity.Set(pool_->capacity());
  m.prefix_cache_blocks.Set(pool_->cached_blocks());
  const int64_t evicted = pool_->evicted_blocks();
  m.prefix_cache_evicted_blocks.Increment(
      static_cast<double>(evicted - evicted_seen_));
  evicted_seen_ = evicted;
}

}  // namespace longctx
