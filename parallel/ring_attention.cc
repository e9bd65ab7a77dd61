#include "parallel/ring_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/lse_merge.h"

namespace longctx {
namespace {

// Message tags of a step: unique per (step, layer, phase), above the plan's.
uint64_t StepTag(uint64_t step, int layer, int phase) {
  return (step << 24) | (static_cast<uint64_t>(layer) << 4) |
         static_cast<uint64_t>(phase);
}

// BlockRun is a maximal run of consecutive blocks of one span's sequence held
// by one rank, with the positions of interest in it: [pos0, pos1).
struct BlockRun {
  int64_t pos0 = 0, pos1 = 0;
  int blk0 = 0, blk1 = 0;
};

// Runs of `span`'s blocks held by `rank`. For queries, only the span's own
// positions; for keys, every position up to the span's end.
std::vector<BlockRun> OwnedRuns(const PlanSpan& span, int rank, int block,
                                bool queries) {
  std::vector<BlockRun> runs;
  const int nb = static_cast<int>(span.owner.size());
  const int first = queries ? span.start / block : 0;
  for (int i = first; i < nb; ++i) {
    if (span.owner[i] != rank) continue;
    if (!runs.empty() && runs.back().blk1 == i) {
      runs.back().blk1 = i + 1;
    } else {
      runs.push_back({0, 0, i, i + 1});
    }
  }
  const int64_t lo = queries ? span.start : 0;
  for (BlockRun& run : runs) {
    run.pos0 = std::max<int64_t>(int64_t{run.blk0} * block, lo);
    run.pos1 = std::min<int64_t>(int64_t{run.blk1} * block, span.end());
  }
  runs.erase(std::remove_if(runs.begin(), runs.end(),
                            [](const BlockRun& r) { return r.pos1 <= r.pos0; }),
             runs.end());
  return runs;
}

int64_t CountPositions(const std::vector<BlockRun>& runs) {
  int64_t n = 0;
  for (const BlockRun& run : runs) n += run.pos1 - run.pos0;
  return n;
}

void InitPartial(float* o, float* lse, int64_t rows, int64_t q_dim, int heads) {
  std::fill(o, o + rows * q_dim, 0.0f);
  std::fill(lse, lse + rows * heads, -std::numeric_limits<float>::infinity());
}

}  // namespace

// Attention is one step's LayerAttention on one rank.
class RingStep::Attention : public LayerAttention {
 public:
  Attention(RingStep& ring, const StepPlan& plan) : ring_(ring), plan_(plan) {
    const LlamaShape& s = ring.model_->shape();
    const KvLayout& kv = ring.pool_->layout();
    P_ = ring.comm_->size();
    rank_ = ring.comm_->rank();
    block_ = kv.block_size;
    heads_ = s.num_heads;
    hd_ = s.head_dim;
    q_dim_ = int64_t{s.num_heads} * hd_;
    kv_dim_ = int64_t{s.num_kv_heads} * hd_;
    dtype_ = CacheDType(kv.dtype);
    compute_ = ring.model_->attention_compute();
    elem_ = kv.ElementBytes();
    tensor_bytes_ = kv.TensorBytes();
    const size_t n = plan.spans.size();
    pass_q_.resize(n);
    q_runs_.assign(n, std::vector<std::vector<BlockRun>>(P_));
    kv_runs_.assign(n, std::vector<std::vector<BlockRun>>(P_));
    row_begin_.resize(n);
    mode_row_begin_.resize(n);
    pass_q_rows_.assign(P_, 0);
    pkg_bytes_.assign(P_, 0);
    pkg_offset_.resize(n);
    int64_t row = 0, q_rows = 0, kv_rows = 0;
    for (size_t i = 0; i < n; ++i) {
      const PlanSpan& span = plan.spans[i];
      for (int j = 0; j < P_; ++j) {
        q_runs_[i][j] = OwnedRuns(span, j, block_, /*queries=*/true);
        kv_runs_[i][j] = OwnedRuns(span, j, block_, /*queries=*/false);
      }
      pass_q_[i] = UsePassQ(span);
      row_begin_[i] = row;
      const int64_t mine = CountPositions(q_runs_[i][rank_]);
      row += mine;
      if (pass_q_[i]) {
        mode_row_begin_[i] = q_rows;
        q_rows += mine;
        for (int j = 0; j < P_; ++j) {
          pass_q_rows_[j] += CountPositions(q_runs_[i][j]);
        }
      } else {
        mode_row_begin_[i] = kv_rows;
        kv_rows += mine;
        pkg_offset_[i].assign(span.owner.size(), 0);
        for (size_t b = 0; b < span.owner.size(); ++b) {
          const int j = span.owner[b];
          pkg_offset_[i][b] = pkg_bytes_[j];
          pkg_bytes_[j] += 2 * tensor_bytes_;
        }
      }
    }
    kv_rows_ = kv_rows;
  }

  absl::Status Attend(int layer, const float* qkv, int64_t qkv_stride,
                      float* out, int64_t out_stride) override {
    const absl::Time start = absl::Now();
    WriteKv(layer, qkv, qkv_stride);
    absl::Status status = PassQ(layer, qkv, qkv_stride, out, out_stride);
    if (status.ok()) status = PassKv(layer, qkv, qkv_stride, out, out_stride);
    ring_.stats_.attention_seconds +=
        absl::ToDoubleSeconds(absl::Now() - start);
    return status;
  }

 private:
  bool UsePassQ(const PlanSpan& span) const {
    switch (ring_.options_.mode) {
      case RingOptions::Mode::kPassQ:
        return true;
      case RingOptions::Mode::kPassKv:
        return false;
      case RingOptions::Mode::kAuto:
        break;
    }
    // Bytes each rank moves per layer: pass-Q sends its queries to every
    // peer and gets partial outputs (+ LSE) back; pass-KV forwards every
    // block of the sequence once.
    const double q_bytes =
        static_cast<double>(span.tokens.size()) * (2 * q_dim_ + heads_) * 4;
    const double kv_bytes = static_cast<double>(span.end()) * 2 * kv_dim_ *
                            static_cast<double>(elem_);
    return q_bytes < kv_bytes;
  }

  // Stores this rank's tokens' keys and values in its blocks.
  void WriteKv(int layer, const float* qkv, int64_t qkv_stride) {
    KvBlockPool& pool = *ring_.pool_;
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      const PlanSpan& span = plan_.spans[i];
      int64_t t = row_begin_[i];
      for (const BlockRun& run : q_runs_[i][rank_]) {
        for (int64_t pos = run.pos0; pos < run.pos1; ++pos, ++t) {
          const int b = span.local[pos / block_];
          const int64_t slot = pos % block_;
          const float* k_src = qkv + t * qkv_stride + q_dim_;
          const float* v_src = k_src + kv_dim_;
          for (int64_t head = 0; head < kv_dim_ / hd_; ++head) {
            const size_t offset =
                (static_cast<size_t>(head) * block_ + slot) * hd_ * elem_;
            kernels::ConvertFromF32(k_src + head * hd_, dtype_,
                                    pool.K(b, layer) + offset, hd_);
            kernels::ConvertFromF32(v_src + head * hd_, dtype_,
                                    pool.V(b, layer) + offset, hd_);
          }
        }
      }
    }
  }

  // Attention of query rows (positions [q.pos0, q.pos1), rows at q_rows with
  // stride q_stride) over the keys of `kv_run`, whose block b's K and V are at
  // k_at(b), v_at(b); merged into (o, lse) rows.
  template <typename KAt>
  absl::Status AttendRun(const float* q_rows, int64_t q_stride,
                         const BlockRun& q, const BlockRun& kv_run, KAt k_at,
                         float* o, float* lse) {
    if (kv_run.pos0 > q.pos1 - 1) return absl::OkStatus();  // Causal future.
    const int64_t n = q.pos1 - q.pos0;
    k_ptrs_.clear();
    v_ptrs_.clear();
    for (int b = kv_run.blk0; b < kv_run.blk1; ++b) {
      const auto [k, v] = k_at(b);
      k_ptrs_.push_back(k);
      v_ptrs_.push_back(v);
    }
    kernels::PagedKv view;
    view.k_blocks = k_ptrs_.data();
    view.v_blocks = v_ptrs_.data();
    view.dtype = dtype_;
    view.block_size = block_;
    view.num_kv_heads = static_cast<int>(kv_dim_ / hd_);
    view.head_dim = static_cast<int>(hd_);
    view.num_tokens = kv_run.pos1 - kv_run.pos0;
    view.start_pos = kv_run.pos0;
    kernels::AttentionParams params;
    params.num_heads = heads_;
    params.q_start_pos = q.pos0;
    params.causal = true;
    params.compute = compute_;
    if (static_cast<int64_t>(tmp_o_.size()) < n * q_dim_) {
      tmp_o_.resize(static_cast<size_t>(n * q_dim_));
      tmp_lse_.resize(static_cast<size_t>(n * heads_));
    }
    absl::Status status =
        kernels::FlashAttention(q_rows, n, q_stride, view, params,
                                tmp_o_.data(), q_dim_, tmp_lse_.data());
    if (!status.ok()) return status;
    kernels::MergeAttention(o, q_dim_, lse, tmp_o_.data(), q_dim_,
                            tmp_lse_.data(), n, heads_, static_cast<int>(hd_));
    return absl::OkStatus();
  }

  // Partial attention, over this rank's blocks, of rank j's pass-Q queries
  // (packed rows of q_dim floats in plan order) into packed (o, lse).
  absl::Status LocalPartials(int layer, int j, const float* q, float* o,
                             float* lse) {
    KvBlockPool& pool = *ring_.pool_;
    int64_t row = 0;
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      if (!pass_q_[i]) continue;
      const PlanSpan& span = plan_.spans[i];
      auto k_at = [&](int b) {
        return std::make_pair(
            static_cast<const void*>(pool.K(span.local[b], layer)),
            static_cast<const void*>(pool.V(span.local[b], layer)));
      };
      for (const BlockRun& q_run : q_runs_[i][j]) {
        for (const BlockRun& kv_run : kv_runs_[i][rank_]) {
          absl::Status status =
              AttendRun(q + row * q_dim_, q_dim_, q_run, kv_run, k_at,
                        o + row * q_dim_, lse + row * heads_);
          if (!status.ok()) return status;
        }
        row += q_run.pos1 - q_run.pos0;
      }
    }
    return absl::OkStatus();
  }

  absl::Status WaitAll(
      std::vector<std::unique_ptr<Communicator::PendingOp>>& ops) {
    const absl::Time start = absl::Now();
    absl::Status result;
    for (auto& op : ops) {
      absl::Status status = op->Wait();
      if (result.ok()) result = status;
    }
    ops.clear();
    ring_.stats_.wait_seconds += absl::ToDoubleSeconds(absl::Now() - start);
    return result;
  }

  absl::Status PassQ(int layer, const float* qkv, int64_t qkv_stride,
                     float* out, int64_t out_stride) {
    const int64_t mine = pass_q_rows_[rank_];
    int64_t total = 0;
    for (int64_t n : pass_q_rows_) total += n;
    if (total == 0) return absl::OkStatus();
    Communicator& comm = *ring_.comm_;
    const uint64_t q_tag = StepTag(plan_.step, layer, 0);
    const uint64_t part_tag = StepTag(plan_.step, layer, 1);
    // This rank's queries, packed.
    my_q_.resize(static_cast<size_t>(mine * q_dim_));
    int64_t packed = 0;
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      if (!pass_q_[i]) continue;
      const int64_t rows = CountPositions(q_runs_[i][rank_]);
      for (int64_t r = 0; r < rows; ++r, ++packed) {
        std::memcpy(my_q_.data() + packed * q_dim_,
                    qkv + (row_begin_[i] + r) * qkv_stride,
                    q_dim_ * sizeof(float));
      }
    }
    // Everyone's queries to everyone.
    peer_q_.resize(P_);
    peer_part_.resize(P_);
    my_part_.resize(P_);
    std::vector<std::unique_ptr<Communicator::PendingOp>> ops;
    for (int j = 0; j < P_; ++j) {
      if (j == rank_) continue;
      const int64_t theirs = pass_q_rows_[j];
      if (theirs > 0) {
        peer_q_[j].resize(static_cast<size_t>(theirs * q_dim_));
        auto op =
            comm.Irecv(peer_q_[j].data(), peer_q_[j].size() * 4, j, q_tag);
        if (!op.ok()) return op.status();
        ops.push_back(*std::move(op));
      }
      if (mine > 0) {
        auto op = comm.Isend(my_q_.data(), my_q_.size() * 4, j, q_tag);
        if (!op.ok()) return op.status();
        ops.push_back(*std::move(op));
        ring_.stats_.bytes_sent += static_cast<int64_t>(my_q_.size()) * 4;
      }
    }
    // This rank's own partial while the queries travel.
    acc_o_.resize(static_cast<size_t>(mine * q_dim_));
    acc_lse_.resize(static_cast<size_t>(mine * heads_));
    InitPartial(acc_o_.data(), acc_lse_.data(), mine, q_dim_, heads_);
    absl::Status status = LocalPartials(layer, rank_, my_q_.data(),
                                        acc_o_.data(), acc_lse_.data());
    if (!status.ok()) return status;
    // Peers' queries: wait for each, compute, send the partial back.
    std::vector<std::unique_ptr<Communicator::PendingOp>> sends;
    status = WaitQueries(ops);
    if (!status.ok()) return status;
    // Partials of this rank's queries, posted only now: a communicator that
    // starts the ops posted before a wait together (NCCL) must not hold the
    // query exchange up for partials that need it to finish first.
    if (mine > 0) {
      for (int j = 0; j < P_; ++j) {
        if (j == rank_) continue;
        my_part_[j].resize(static_cast<size_t>(mine * (q_dim_ + heads_)));
        auto op =
            comm.Irecv(my_part_[j].data(), my_part_[j].size() * 4, j, part_tag);
        if (!op.ok()) return op.status();
        ops.push_back(*std::move(op));
      }
    }
    for (int j = 0; j < P_; ++j) {
      const int64_t theirs = pass_q_rows_[j];
      if (j == rank_ || theirs == 0) continue;
      peer_part_[j].resize(static_cast<size_t>(theirs * (q_dim_ + heads_)));
      float* o = peer_part_[j].data();
      float* lse = o + theirs * q_dim_;
      InitPartial(o, lse, theirs, q_dim_, heads_);
      status = LocalPartials(layer, j, peer_q_[j].data(), o, lse);
      if (!status.ok()) return status;
      auto op = comm.Isend(peer_part_[j].data(), peer_part_[j].size() * 4, j,
                           part_tag);
      if (!op.ok()) return op.status();
      sends.push_back(*std::move(op));
      ring_.stats_.bytes_sent += static_cast<int64_t>(peer_part_[j].size()) * 4;
    }
    status = WaitAll(ops);
    if (status.ok()) status = WaitAll(sends);
    if (!status.ok()) return status;
    for (int j = 0; j < P_; ++j) {
      if (j == rank_ || mine == 0) continue;
      const float* o = my_part_[j].data();
      kernels::MergeAttention(acc_o_.data(), q_dim_, acc_lse_.data(), o, q_dim_,
                              o + mine * q_dim_, mine, heads_,
                              static_cast<int>(hd_));
    }
    // Into the output rows.
    packed = 0;
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      if (!pass_q_[i]) continue;
      const int64_t rows = CountPositions(q_runs_[i][rank_]);
      for (int64_t r = 0; r < rows; ++r, ++packed) {
        std::memcpy(out + (row_begin_[i] + r) * out_stride,
                    acc_o_.data() + packed * q_dim_, q_dim_ * sizeof(float));
      }
    }
    return absl::OkStatus();
  }

  // Waits for the peers' queries (the receives among `ops`); the remaining
  // ops stay in `ops`.
  absl::Status WaitQueries(
      std::vector<std::unique_ptr<Communicator::PendingOp>>& ops) {
    // Per peer, the receive of its queries (if it has any) was posted before
    // the send of this rank's queries (if this rank has any). Only the query
    // receives are waited for; the sends stay in `ops`.
    const absl::Time start = absl::Now();
    std::vector<std::unique_ptr<Communicator::PendingOp>> rest;
    size_t k = 0;
    for (int j = 0; j < P_; ++j) {
      if (j == rank_) continue;
      if (pass_q_rows_[j] > 0) {
        absl::Status status = ops[k++]->Wait();
        if (!status.ok()) return status;
      }
      if (pass_q_rows_[rank_] > 0) {
        rest.push_back(std::move(ops[k++]));  // Send of this rank's queries.
      }
    }
    ops = std::move(rest);
    ring_.stats_.wait_seconds += absl::ToDoubleSeconds(absl::Now() - start);
    return absl::OkStatus();
  }

  absl::Status PassKv(int layer, const float* qkv, int64_t qkv_stride,
                      float* out, int64_t out_stride) {
    bool any = false;
    for (size_t i = 0; i < plan_.spans.size(); ++i) any |= !pass_q_[i];
    if (!any) return absl::OkStatus();
    KvBlockPool& pool = *ring_.pool_;
    Communicator& comm = *ring_.comm_;
    // This rank's package: the layer's K,V of its blocks, in plan order.
    const int64_t max_bytes =
        *std::max_element(pkg_bytes_.begin(), pkg_bytes_.end());
    cur_.resize(static_cast<size_t>(max_bytes));
    next_.resize(static_cast<size_t>(max_bytes));
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      if (pass_q_[i]) continue;
      const PlanSpan& span = plan_.spans[i];
      for (size_t b = 0; b < span.owner.size(); ++b) {
        if (span.owner[b] != rank_) continue;
        // A block's layer holds K then V, adjacent.
        std::memcpy(cur_.data() + pkg_offset_[i][b],
                    pool.K(span.local[b], layer), 2 * tensor_bytes_);
      }
    }
    acc_o_.resize(static_cast<size_t>(kv_rows_ * q_dim_));
    acc_lse_.resize(static_cast<size_t>(kv_rows_ * heads_));
    InitPartial(acc_o_.data(), acc_lse_.data(), kv_rows_, q_dim_, heads_);
    const int next_rank = (rank_ + 1) % P_;
    const int prev_rank = (rank_ + P_ - 1) % P_;
    const uint64_t tag = StepTag(plan_.step, layer, 2);
    for (int hop = 0; hop < P_; ++hop) {
      const int src = (rank_ - hop + P_) % P_;
      std::vector<std::unique_ptr<Communicator::PendingOp>> ops;
      if (hop + 1 < P_) {
        const int incoming = (src + P_ - 1) % P_;
        if (pkg_bytes_[src] > 0) {
          auto op = comm.Isend(cur_.data(), pkg_bytes_[src], next_rank, tag);
          if (!op.ok()) return op.status();
          ops.push_back(*std::move(op));
          ring_.stats_.bytes_sent += pkg_bytes_[src];
          ring_.stats_.ring_bytes_sent += pkg_bytes_[src];
        }
        if (pkg_bytes_[incoming] > 0) {
          auto op =
              comm.Irecv(next_.data(), pkg_bytes_[incoming], prev_rank, tag);
          if (!op.ok()) return op.status();
          ops.push_back(*std::move(op));
        }
      }
      // Attend to `src`'s blocks while the next package travels.
      for (size_t i = 0; i < plan_.spans.size(); ++i) {
        if (pass_q_[i]) continue;
        const uint8_t* base = cur_.data();
        const std::vector<int64_t>& offsets = pkg_offset_[i];
        auto k_at = [&](int b) {
          const uint8_t* k = base + offsets[b];
          return std::make_pair(static_cast<const void*>(k),
                                static_cast<const void*>(k + tensor_bytes_));
        };
        int64_t row = mode_row_begin_[i];
        int64_t batch_row = row_begin_[i];
        for (const BlockRun& q_run : q_runs_[i][rank_]) {
          for (const BlockRun& kv_run : kv_runs_[i][src]) {
            absl::Status status = AttendRun(
                qkv + batch_row * qkv_stride, qkv_stride, q_run, kv_run, k_at,
                acc_o_.data() + row * q_dim_, acc_lse_.data() + row * heads_);
            if (!status.ok()) return status;
          }
          row += q_run.pos1 - q_run.pos0;
          batch_row += q_run.pos1 - q_run.pos0;
        }
      }
      absl::Status status = WaitAll(ops);
      if (!status.ok()) return status;
      std::swap(cur_, next_);
    }
    for (size_t i = 0; i < plan_.spans.size(); ++i) {
      if (pass_q_[i]) continue;
      const int64_t rows = CountPositions(q_runs_[i][rank_]);
      for (int64_t r = 0; r < rows; ++r) {
        std::memcpy(out + (row_begin_[i] + r) * out_stride,
                    acc_o_.data() + (mode_row_begin_[i] + r) * q_dim_,
                    q_dim_ * sizeof(float));
      }
    }
    return absl::OkStatus();
  }

  RingStep& ring_;
  const StepPlan& plan_;
  int P_ = 1, rank_ = 0, block_ = 0, heads_ = 0;
  int64_t hd_ = 0, q_dim_ = 0, kv_dim_ = 0;
  kernels::DType dtype_ = kernels::DType::kF16;
  kernels::DType compute_ = kernels::DType::kF32;  // AttentionParams::compute
  size_t elem_ = 0, tensor_bytes_ = 0;
  // Per span: whether it uses pass-Q; [span][rank] runs of query positions
  // and of key blocks; the span's first row in this rank's batch and in its
  // mode's packed rows; per block the offset in its owner's KV package.
  std::vector<bool> pass_q_;
  std::vector<std::vector<std::vector<BlockRun>>> q_runs_, kv_runs_;
  std::vector<int64_t> row_begin_, mode_row_begin_;
  std::vector<std::vector<int64_t>> pkg_offset_;
  std::vector<int64_t> pass_q_rows_;  // Per rank: its pass-Q query rows.
  std::vector<int64_t> pkg_bytes_;    // Per rank: its KV package size.
  int64_t kv_rows_ = 0;               // This rank's pass-KV query rows.
  // Scratch.
  std::vector<float> my_q_, acc_o_, acc_lse_, tmp_o_, tmp_lse_;
  std::vector<std::vector<float>> peer_q_, peer_part_, my_part_;
  std::vector<uint8_t> cur_, next_;
  std::vector<const void*> k_ptrs_, v_ptrs_;
};

RingStep::RingStep(LlamaModel* model, KvBlockPool* pool, Communicator* comm,
                   const RingOptions& options)
    : model_(model), pool_(pool), comm_(comm), options_(options) {}

int64_t RingStep::LogitRows(const StepPlan& plan) {
  int64_t rows = 0;
  for (const PlanSpan& span : plan.spans) {
    if (span.all_logits) {
      rows += static_cast<int64_t>(span.tokens.size());
    } else if (span.want_logits && !span.tokens.empty()) {
      ++rows;
    }
  }
  return rows;
}

absl::Status RingStep::Run(const StepPlan& plan, float* logits) {
  const int P = comm_->size();
  const int rank = comm_->rank();
  const int block = pool_->layout().block_size;
  if (plan.kind != StepPlan::kStep) {
    return absl::InvalidArgumentError("only a step plan runs");
  }
  if (rank == 0 && logits == nullptr && LogitRows(plan) > 0) {
    return absl::InvalidArgumentError("rank 0 needs a logits buffer");
  }
  // Validate before anything is exchanged: every rank sees the same plan, so
  // every rank fails the same way.
  for (const PlanSpan& span : plan.spans) {
    const int64_t nb = (int64_t{span.end()} + block - 1) / block;
    if (static_cast<int64_t>(span.owner.size()) != nb ||
        span.local.size() != span.owner.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("span up to position ", span.end(), " needs ", nb,
                       " blocks, plan has ", span.owner.size()));
    }
    for (size_t b = 0; b < span.owner.size(); ++b) {
      if (span.owner[b] < 0 || span.owner[b] >= P) {
        return absl::InvalidArgumentError(absl::StrCat(
            "block on rank ", span.owner[b], " in a group of ", P));
      }
      if (span.owner[b] == rank &&
          (span.local[b] < 0 || span.local[b] >= pool_->capacity())) {
        return absl::InvalidArgumentError(
            absl::StrCat("block id ", span.local[b],
                         " outside this rank's pool of ", pool_->capacity()));
      }
    }
    for (int32_t token : span.tokens) {
      if (token < 0 || token >= model_->vocab_size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", token, " outside the vocabulary"));
      }
    }
  }
  ++stats_.steps;
  // This rank's tokens (those whose blocks it holds), and which of them want
  // logits; `entries` lists every wanted row of the step with its rank.
  std::vector<int32_t> ids, positions;
  std::vector<int64_t> my_rows;
  std::vector<int> entry_rank;
  for (const PlanSpan& span : plan.spans) {
    for (int32_t pos = span.start; pos < span.end(); ++pos) {
      const int owner = span.owner[pos / block];
      const bool wanted =
          span.all_logits || (span.want_logits && pos == span.end() - 1);
      if (wanted) entry_rank.push_back(owner);
      if (owner != rank) continue;
      if (wanted) my_rows.push_back(static_cast<int64_t>(ids.size()));
      ids.push_back(span.tokens[pos - span.start]);
      positions.push_back(pos);
    }
  }
  const size_t vocab = static_cast<size_t>(model_->vocab_size());
  my_logits_.resize(my_rows.size() * vocab);
  Attention attention(*this, plan);
  absl::Status status =
      model_->RunTokens(ids, positions, attention, my_rows, my_logits_.data());
  if (!status.ok()) return status;
  // Logits to rank 0, in plan order.
  const uint64_t tag = StepTag(plan.step, model_->shape().num_layers, 15);
  if (rank != 0) {
    if (my_rows.empty()) return absl::OkStatus();
    stats_.bytes_sent += static_cast<int64_t>(my_logits_.size()) * 4;
    return comm_->Send(my_logits_.data(), my_logits_.size() * sizeof(float), 0,
                       tag);
  }
  std::vector<std::vector<float>> from(P);
  std::vector<int64_t> count(P, 0);
  for (int owner : entry_rank) ++count[owner];
  std::vector<std::unique_ptr<Communicator::PendingOp>> ops;
  for (int j = 1; j < P; ++j) {
    if (count[j] == 0) continue;
    from[j].resize(static_cast<size_t>(count[j]) * vocab);
    auto op =
        comm_->Irecv(from[j].data(), from[j].size() * sizeof(float), j, tag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
  }
  for (auto& op : ops) {
    status = op->Wait();
    if (!status.ok()) return status;
  }
  from[0] = std::move(my_logits_);
  std::vector<int64_t> used(P, 0);
  for (size_t e = 0; e < entry_rank.size(); ++e) {
    const int j = entry_rank[e];
    std::memcpy(logits + e * vocab, from[j].data() + used[j]++ * vocab,
                vocab * sizeof(float));
  }
  my_logits_ = std::move(from[0]);
  return absl::OkStatus();
}

}  // namespace longctx
