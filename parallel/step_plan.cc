#include "parallel/step_plan.h"

#include <cstring>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

constexpr uint64_t kPlanSizeTag = 1;
constexpr uint64_t kPlanBodyTag = 2;

// Plans travel between ranks of one deployment (same architecture): values
// are copied in host byte order.
class Writer {
 public:
  template <typename T>
  void Put(T value) {
    out_.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  void PutInts(const std::vector<int32_t>& v) {
    out_.append(reinterpret_cast<const char*>(v.data()),
                v.size() * sizeof(int32_t));
  }
  void PutBytes(const std::string& bytes) { out_.append(bytes); }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(absl::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T& value) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(&value, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool GetInts(size_t n, std::vector<int32_t>& v) {
    if (in_.size() / sizeof(int32_t) < n) return false;
    v.resize(n);
    std::memcpy(v.data(), in_.data(), n * sizeof(int32_t));
    in_.remove_prefix(n * sizeof(int32_t));
    return true;
  }
  bool GetBytes(size_t n, std::string& out) {
    if (in_.size() < n) return false;
    out.assign(in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  bool done() const { return in_.empty(); }

 private:
  absl::string_view in_;
};

}  // namespace

std::string EncodeStepPlan(const StepPlan& plan) {
  Writer w;
  w.Put<int32_t>(plan.kind);
  w.Put<uint64_t>(plan.step);
  w.Put<int32_t>(static_cast<int32_t>(plan.spans.size()));
  for (const PlanSpan& span : plan.spans) {
    w.Put<int32_t>(span.start);
    w.Put<int32_t>(static_cast<int32_t>(span.tokens.size()));
    w.Put<uint8_t>((span.want_logits ? 1 : 0) | (span.all_logits ? 2 : 0));
    w.Put<int32_t>(static_cast<int32_t>(span.owner.size()));
    w.PutInts(span.tokens);
    w.PutInts(span.owner);
    w.PutInts(span.local);
  }
  for (const std::vector<BlockIo>* list : {&plan.offloads, &plan.restores}) {
    w.Put<int32_t>(static_cast<int32_t>(list->size()));
    for (const BlockIo& io : *list) {
      w.Put<int32_t>(io.rank);
      w.Put<int32_t>(io.local);
      w.Put<int32_t>(io.token_count);
      for (const std::string* bytes : {&io.id.key, &io.id.token_digest}) {
        w.Put<int32_t>(static_cast<int32_t>(bytes->size()));
        w.PutBytes(*bytes);
      }
    }
  }
  return w.Take();
}

absl::StatusOr<StepPlan> DecodeStepPlan(absl::string_view bytes) {
  const auto truncated = [] {
    return absl::InvalidArgumentError("step plan is truncated");
  };
  Reader r(bytes);
  StepPlan plan;
  int32_t num_spans = 0;
  if (!r.Get(plan.kind) || !r.Get(plan.step) || !r.Get(num_spans)) {
    return truncated();
  }
  if (plan.kind < StepPlan::kStep || plan.kind > StepPlan::kRestore ||
      num_spans < 0) {
    return absl::InvalidArgumentError("step plan has a bad header");
  }
  plan.spans.resize(static_cast<size_t>(num_spans));
  for (PlanSpan& span : plan.spans) {
    int32_t num_tokens = 0, num_blocks = 0;
    uint8_t flags = 0;
    if (!r.Get(span.start) || !r.Get(num_tokens) || !r.Get(flags) ||
        !r.Get(num_blocks)) {
      return truncated();
    }
    if (span.start < 0 || num_tokens < 0 || num_blocks < 0) {
      return absl::InvalidArgumentError("step plan has a negative size");
    }
    span.want_logits = (flags & 1) != 0;
    span.all_logits = (flags & 2) != 0;
    if (!r.GetInts(static_cast<size_t>(num_tokens), span.tokens) ||
        !r.GetInts(static_cast<size_t>(num_blocks), span.owner) ||
        !r.GetInts(static_cast<size_t>(num_blocks), span.local)) {
      return truncated();
    }
  }
  for (std::vector<BlockIo>* list : {&plan.offloads, &plan.restores}) {
    int32_t n = 0;
    if (!r.Get(n)) return truncated();
    if (n < 0) return absl::InvalidArgumentError("step plan has a bad list");
    for (int32_t i = 0; i < n; ++i) {
      BlockIo io;
      if (!r.Get(io.rank) || !r.Get(io.local) || !r.Get(io.token_count)) {
        return truncated();
      }
      for (std::string* bytes : {&io.id.key, &io.id.token_digest}) {
        int32_t size = 0;
        if (!r.Get(size) || size < 0 ||
            !r.GetBytes(static_cast<size_t>(size), *bytes)) {
          return truncated();
        }
      }
      list->push_back(std::move(io));
    }
  }
  if (!r.done()) {
    return absl::InvalidArgumentError("step plan has trailing bytes");
  }
  return plan;
}

absl::Status SendStepPlan(Communicator& comm, const StepPlan& plan) {
  const std::string body = EncodeStepPlan(plan);
  const uint64_t size = body.size();
  std::vector<std::unique_ptr<Communicator::PendingOp>> ops;
  for (int peer = 1; peer < comm.size(); ++peer) {
    auto op = comm.Isend(&size, sizeof(size), peer, kPlanSizeTag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
    op = comm.Isend(body.data(), body.size(), peer, kPlanBodyTag);
    if (!op.ok()) return op.status();
    ops.push_back(*std::move(op));
  }
  for (auto& op : ops) {
    absl::Status status = op->Wait();
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<StepPlan> RecvStepPlan(
    Communicator& comm, absl::Duration wait,
    const std::function<void(Communicator::PendingOp*)>& watch) {
  uint64_t size = 0;
  auto op = comm.Irecv(&size, sizeof(size), 0, kPlanSizeTag);
  if (!op.ok()) return op.status();
  if (watch) watch(op->get());
  absl::Status status = (*op)->WaitFor(wait);
  if (watch) watch(nullptr);
  if (!status.ok()) return status;
  if (size > (uint64_t{1} << 32)) {
    return absl::InvalidArgumentError(
        absl::StrCat("step plan of ", size, " bytes"));
  }
  std::string body(static_cast<size_t>(size), '\0');
  status = comm.Recv(body.data(), body.size(), 0, kPlanBodyTag);
  if (!status.ok()) return status;
  return DecodeStepPlan(body);
}

}  // namespace longctx
