#include "services/worker/engine.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "services/common/block_keys.h"
#include "services/worker/sampler.h"

namespace longctx {

struct Engine::Sequence {
  int64_t id = 0;
  GenerateParams params;
  TokenSink sink;
  std::vector<int32_t> tokens;  // Prompt, then generated tokens.
  std::vector<int> blocks;      // Reserved for prompt + max_new_tokens.
  int computed = 0;             // Tokens whose KV is in `blocks`.
  int generated = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  bool cancelled = false;
  absl::Time submitted = absl::Now();
  std::vector<std::string> keys;  // Store keys of the prompt's full blocks.
  int stored_blocks = 0;          // Leading blocks restored from the store.
  int offloaded_upto = 0;         // Blocks already considered for offload.
  int cached_tokens = 0;

  int prompt_size() const { return static_cast<int>(params.prompt.size()); }
  bool prefilling() const { return computed < prompt_size(); }
};

Engine::Engine(ForwardModel* model, KvBlockPool* pool,
               const EngineOptions& options)
    : model_(model), pool_(pool), options_(options) {
  thread_ = std::thread([this] { Loop(); });
}

Engine::~Engine() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
  // Whatever did not finish is cancelled.
  for (auto& seq : running_) {
    Finish(*seq, v1::FINISH_REASON_UNSPECIFIED,
           absl::CancelledError("the worker is shutting down"));
  }
  absl::MutexLock lock(&mu_);
  for (auto& seq : waiting_) {
    TokenEvent event;
    event.finished = true;
    event.status = absl::CancelledError("the worker is shutting down");
    seq->sink(std::move(event));
  }
}

void Engine::OffloadCompletedBlocks(Sequence& seq) {
  if (options_.offloader == nullptr || !seq.params.cache_write) return;
  const int b = pool_->layout().block_size;
  const int full =
      std::min(seq.computed / b, static_cast<int>(seq.keys.size()));
  for (int i = seq.offloaded_upto; i < full; ++i) {
    options_.offloader->Offload(seq.keys[i], seq.blocks[i], b);
  }
  seq.offloaded_upto = std::max(seq.offloaded_upto, full);
}

int Engine::BlocksFor(int tokens) const {
  const int b = pool_->layout().block_size;
  return (tokens + b - 1) / b;
}

absl::StatusOr<int64_t> Engine::Submit(GenerateParams params, TokenSink sink) {
  const int total =
      static_cast<int>(params.prompt.size()) + params.max_new_tokens;
  const int needed = BlocksFor(total);
  if (needed > pool_->capacity()) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "prompt (", params.prompt.size(), " tokens) + max_new_tokens (",
        params.max_new_tokens, ") needs ", needed, " KV blocks of ",
        pool_->layout().block_size, " tokens; this worker holds ",
        pool_->capacity(), " (--kv_cache_bytes)"));
  }
  auto seq = std::make_unique<Sequence>();
  seq->params = std::move(params);
  seq->sink = std::move(sink);
  seq->tokens = seq->params.prompt;
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
  return id;
}

void Engine::Cancel(int64_t id) {
  absl::MutexLock lock(&mu_);
  cancelled_.push_back(id);
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
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto has_work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !running_.empty() || !waiting_.empty() ||
               !cancelled_.empty();
      };
      mu_.Await(absl::Condition(&has_work));
      if (stopping_) return;
    }
    Step();
  }
}

void Engine::Finish(Sequence& seq, v1::FinishReason reason,
                    absl::Status status) {
  for (int block : seq.blocks) pool_->Unref(block);
  seq.blocks.clear();
  TokenEvent event;
  event.finished = true;
  event.finish_reason = reason;
  event.cached_tokens = seq.cached_tokens;
  event.prefill_seconds = seq.prefill_seconds;
  event.decode_seconds = seq.decode_seconds;
  event.status = std::move(status);
  seq.sink(std::move(event));
  seq.cancelled = true;  // Marks it for removal from running_.
}

bool Engine::Step() {
  std::vector<std::unique_ptr<Sequence>> cancelled_waiting;
  std::vector<std::unique_ptr<Sequence>> admitted;
  {
    absl::MutexLock lock(&mu_);
    // Cancellations, of running and of waiting requests.
    for (int64_t id : cancelled_) {
      for (auto& seq : running_) {
        if (seq->id == id) seq->cancelled = true;
      }
      for (auto it = waiting_.begin(); it != waiting_.end();) {
        if ((*it)->id == id) {
          cancelled_waiting.push_back(std::move(*it));
          it = waiting_.erase(it);
        } else {
          ++it;
        }
      }
    }
    cancelled_.clear();
    // Admission, first come first served, when the whole reservation fits.
    while (!waiting_.empty() &&
           static_cast<int>(running_.size() + admitted.size()) <
               options_.max_running) {
      Sequence& next = *waiting_.front();
      const int needed =
          BlocksFor(next.prompt_size() + next.params.max_new_tokens);
      if (needed > pool_->free_blocks()) break;
      for (int i = 0; i < needed; ++i)
        next.blocks.push_back(*pool_->Allocate());
      if (options_.metrics != nullptr) {
        options_.metrics->queue_time.Observe(
            absl::ToDoubleSeconds(absl::Now() - next.submitted));
      }
      admitted.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
  }
  // Restore the stored prefix of each admitted prompt (outside the lock: it
  // reads from the store). At least the prompt's last token is always computed,
  // for its logits.
  for (auto& seq : admitted) {
    if (options_.offloader != nullptr &&
        (seq->params.cache_read || seq->params.cache_write)) {
      const int b = pool_->layout().block_size;
      for (const Hash128& key :
           ChainedBlockKeys(options_.fingerprint, seq->params.prompt, b)) {
        seq->keys.push_back(KeyBytes(key));
      }
      if (seq->params.cache_read) {
        // Every stored full block is restored; the prompt's last token is then
        // computed again (rewriting its own KV with the same values) for
        // logits.
        const int restorable = std::min(static_cast<int>(seq->keys.size()),
                                        seq->prompt_size() / b);
        seq->stored_blocks = options_.offloader->Restore(
            absl::MakeConstSpan(seq->keys).subspan(0, restorable),
            absl::MakeConstSpan(seq->blocks).subspan(0, restorable));
        seq->computed =
            std::min(seq->stored_blocks * b, seq->prompt_size() - 1);
        seq->cached_tokens = seq->computed;
        seq->offloaded_upto = seq->stored_blocks;
      }
    }
    running_.push_back(std::move(seq));
  }
  for (auto& seq : cancelled_waiting) {
    TokenEvent event;
    event.finished = true;
    event.status = absl::CancelledError("the request was cancelled");
    seq->sink(std::move(event));
  }
  for (auto& seq : running_) {
    if (seq->cancelled && !seq->blocks.empty()) {
      Finish(*seq, v1::FINISH_REASON_UNSPECIFIED,
             absl::CancelledError("the request was cancelled"));
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& s) { return s->cancelled; }),
                 running_.end());

  // The batch: every decoding sequence's newest token, then prompt chunks up to
  // the step's prefill budget, oldest request first.
  std::vector<SeqSpan> spans;
  std::vector<Sequence*> owners;
  std::vector<bool> is_prefill;
  for (auto& seq : running_) {
    if (seq->prefilling()) continue;
    SeqSpan span;
    span.tokens = absl::MakeConstSpan(seq->tokens).subspan(seq->computed);
    span.start = seq->computed;
    span.blocks = seq->blocks;
    span.want_logits = true;
    spans.push_back(span);
    owners.push_back(seq.get());
    is_prefill.push_back(false);
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
    spans.push_back(span);
    owners.push_back(seq.get());
    is_prefill.push_back(true);
    budget -= n;
  }
  {
    absl::MutexLock lock(&mu_);
    running_count_ = static_cast<int>(running_.size());
  }
  if (spans.empty()) return false;

  int rows = 0;
  for (const SeqSpan& span : spans) rows += span.want_logits ? 1 : 0;
  const size_t vocab = static_cast<size_t>(model_->vocab_size());
  if (logits_.size() < rows * vocab) logits_.resize(rows * vocab);
  const absl::Time start = absl::Now();
  absl::Status status = model_->Forward(spans, *pool_, logits_.data());
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  if (options_.metrics != nullptr) {
    double prefilled = 0, decoded = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      (is_prefill[i] ? prefilled : decoded) +=
          static_cast<double>(spans[i].tokens.size());
    }
    options_.metrics->prefill_tokens.Increment(prefilled);
    options_.metrics->decode_tokens.Increment(decoded);
    (prefilled > 0 ? options_.metrics->prefill_step
                   : options_.metrics->decode_step)
        .Observe(seconds);
  }
  if (!status.ok()) {
    // UNAVAILABLE: the model lost state it keeps elsewhere (a rank of the
    // group, holding part of every sequence's KV, went away): every running
    // sequence fails, not only this step's. Anything else fails the step's.
    const bool lost_kv = absl::IsUnavailable(status);
    const absl::Status failure(
        lost_kv ? absl::StatusCode::kUnavailable : absl::StatusCode::kInternal,
        absl::StrCat("forward pass failed: ", status.message()));
    if (lost_kv) {
      for (auto& seq : running_) {
        if (!seq->cancelled) {
          Finish(*seq, v1::FINISH_REASON_UNSPECIFIED, failure);
        }
      }
    } else {
      for (Sequence* seq : owners) {
        Finish(*seq, v1::FINISH_REASON_UNSPECIFIED, failure);
      }
    }
  } else {
    int row = 0;
    for (size_t i = 0; i < spans.size(); ++i) {
      Sequence& seq = *owners[i];
      seq.computed += static_cast<int>(spans[i].tokens.size());
      if (is_prefill[i]) OffloadCompletedBlocks(seq);
      (is_prefill[i] ? seq.prefill_seconds : seq.decode_seconds) += seconds;
      if (!spans[i].want_logits) continue;
      const float* logits = logits_.data() + static_cast<size_t>(row++) * vocab;
      TokenEvent event;
      v1::TokenLogprob logprob;
      absl::StatusOr<int32_t> sampled = SampleNextToken(
          logits, static_cast<int>(vocab), seq.params, seq.generated,
          seq.params.logprobs ? &logprob : nullptr);
      if (!sampled.ok()) {
        Finish(seq, v1::FINISH_REASON_UNSPECIFIED,
               absl::InternalError(absl::StrCat("sampling failed: ",
                                                sampled.status().message())));
        continue;
      }
      const int32_t token = *sampled;
      seq.tokens.push_back(token);
      ++seq.generated;
      event.tokens.push_back(token);
      if (seq.params.logprobs) event.logprobs.push_back(std::move(logprob));
      event.prefill_seconds = seq.prefill_seconds;
      event.cached_tokens = seq.cached_tokens;
      seq.sink(std::move(event));
      const auto& stops = seq.params.stop_token_ids;
      if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
        Finish(seq, v1::FINISH_REASON_STOP_TOKEN, absl::OkStatus());
      } else if (seq.generated >= seq.params.max_new_tokens) {
        Finish(seq, v1::FINISH_REASON_LENGTH, absl::OkStatus());
      }
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& s) { return s->cancelled; }),
                 running_.end());
  absl::MutexLock lock(&mu_);
  running_count_ = static_cast<int>(running_.size());
  if (options_.metrics != nullptr) {
    options_.metrics->running.Set(running_count_);
    options_.metrics->waiting.Set(static_cast<double>(waiting_.size()));
    options_.metrics->kv_blocks_used.Set(pool_->used_blocks());
    options_.metrics->kv_blocks_capacity.Set(pool_->capacity());
  }
  return true;
}

}  // namespace longctx
