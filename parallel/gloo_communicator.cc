#include "parallel/gloo_communicator.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gloo/common/error.h"
#include "gloo/rendezvous/context.h"
#include "gloo/transport/tcp/device.h"
#include "gloo/transport/unbound_buffer.h"

namespace longctx {
namespace {

// Gloo reports every failure by throwing; nothing escapes this file. This Gloo
// has no timeout exception type: a timeout is an IoException saying "Timed
// out".
absl::Status FromGloo(const std::exception& e, absl::string_view what) {
  if (dynamic_cast<const gloo::IoException*>(&e) != nullptr) {
    if (absl::StrContains(e.what(), "Timed out")) {
      return absl::DeadlineExceededError(absl::StrCat(what, ": ", e.what()));
    }
    return absl::UnavailableError(absl::StrCat(what, ": ", e.what()));
  }
  return absl::InternalError(absl::StrCat(what, ": ", e.what()));
}

// Gloo adds timeouts to the clock: an infinite one is capped at 30 days so the
// sum cannot overflow.
std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(
      absl::ToInt64Milliseconds(std::min(d, absl::Hours(24 * 30))));
}

// A tag no one sends under (the communicator refuses tags of kMaxTag and
// above).
constexpr uint64_t kSentinelTag = ~uint64_t{0};

}  // namespace

// Watches the connections to the peers. Gloo's TCP pair, when its connection
// fails, fails the receives and sends that wait for the peer, but not a send
// it is still writing (queued until the socket drains) nor a receive it is
// half way through reading: those would wait out their whole timeout. So
// every peer has a sentinel: a receive under a tag no one sends, which Gloo
// fails with the connection; a thread per peer waits on it, and when it
// fails, the waits in progress on that peer (and those that start later) are
// aborted and report UNAVAILABLE.
class GlooCommunicator::PeerWatch {
 public:
  // A wait in progress on `peer`; `lost` is set (before the abort) when the
  // peer's connection has failed.
  struct Waiter {
    int peer = 0;
    Communicator::PendingOp* op = nullptr;
    std::string lost;
  };

  PeerWatch(std::shared_ptr<gloo::Context> context, int rank, int size)
      : context_(std::move(context)), lost_(size) {
    // All posted (this may throw) before any thread starts.
    for (int peer = 0; peer < size; ++peer) {
      if (peer == rank) continue;
      sentinels_.push_back(context_->createUnboundBuffer(&sink_, 0));
      sentinels_.back()->recv(peer, kSentinelTag);
      peers_.push_back(peer);
    }
    for (size_t i = 0; i < sentinels_.size(); ++i) {
      threads_.emplace_back(
          [this, i] { Watch(peers_[i], sentinels_[i].get()); });
    }
  }

  ~PeerWatch() {
    for (auto& sentinel : sentinels_) sentinel->abortWaitRecv();
    for (auto& thread : threads_) thread.join();
  }

  // Add registers a wait; it is aborted at once if its peer is already lost.
  void Add(Waiter* w) {
    absl::MutexLock lock(&mu_);
    waiters_.push_back(w);
    if (!lost_[w->peer].empty()) Lose(w, lost_[w->peer]);
  }

  // After Remove returns the watch no longer touches `w` or its op.
  void Remove(Waiter* w) {
    absl::MutexLock lock(&mu_);
    waiters_.erase(std::find(waiters_.begin(), waiters_.end(), w));
  }

 private:
  void Watch(int peer, gloo::transport::UnboundBuffer* sentinel) {
    std::string why;
    try {
      // "Forever": Gloo fails the whole context when a wait times out.
      if (!sentinel->waitRecv(std::chrono::hours(24 * 365 * 10))) return;
      why = "it sent under the reserved tag";
    } catch (const std::exception& e) {
      why = e.what();
    }
    absl::MutexLock lock(&mu_);
    lost_[peer] = why;
    for (Waiter* w : waiters_) {
      if (w->peer == peer) Lose(w, why);
    }
  }

  static void Lose(Waiter* w, const std::string& why) {
    if (!w->lost.empty()) return;
    w->lost = why;
    w->op->Abort();
  }

  const std::shared_ptr<gloo::Context> context_;
  char sink_ = 0;
  std::vector<std::unique_ptr<gloo::transport::UnboundBuffer>> sentinels_;
  std::vector<int> peers_;  // Of the sentinels.
  std::vector<std::thread> threads_;
  absl::Mutex mu_;
  std::vector<std::string> lost_ ABSL_GUARDED_BY(mu_);  // By peer.
  std::vector<Waiter*> waiters_ ABSL_GUARDED_BY(mu_);
};

namespace {

class GlooOp : public Communicator::PendingOp {
 public:
  GlooOp(std::unique_ptr<gloo::transport::UnboundBuffer> buffer, bool is_send,
         int peer, absl::Duration timeout,
         std::shared_ptr<GlooCommunicator::PeerWatch> watch)
      : buffer_(std::move(buffer)),
        is_send_(is_send),
        peer_(peer),
        timeout_(timeout),
        watch_(std::move(watch)) {}

  ~GlooOp() override {
    if (done_) return;
    try {
      if (is_send_) {
        buffer_->abortWaitSend();
      } else {
        buffer_->abortWaitRecv();
      }
    } catch (const std::exception&) {
      // Nothing more to do for an op nobody waits for.
    }
  }

  absl::Status Wait() override { return WaitFor(timeout_); }

  void Abort() override {
    if (is_send_) {
      buffer_->abortWaitSend();
    } else {
      buffer_->abortWaitRecv();
    }
  }

  absl::Status WaitFor(absl::Duration timeout) override {
    done_ = true;
    const std::string what =
        absl::StrCat(is_send_ ? "send to" : "receive from", " rank ", peer_);
    GlooCommunicator::PeerWatch::Waiter waiter;
    waiter.peer = peer_;
    waiter.op = this;
    watch_->Add(&waiter);
    absl::Status status;
    try {
      bool ok = is_send_ ? buffer_->waitSend(Millis(timeout))
                         : buffer_->waitRecv(Millis(timeout));
      if (!ok) status = absl::AbortedError(absl::StrCat(what, " was aborted"));
    } catch (const std::exception& e) {
      status = FromGloo(e, what);
    }
    watch_->Remove(&waiter);
    if (!waiter.lost.empty() && !status.ok()) {
      return absl::UnavailableError(absl::StrCat(
          what, ": the connection to rank ", peer_, " failed: ", waiter.lost));
    }
    return status;
  }

 private:
  std::unique_ptr<gloo::transport::UnboundBuffer> buffer_;
  const bool is_send_;
  const int peer_;
  const absl::Duration timeout_;
  const std::shared_ptr<GlooCommunicator::PeerWatch> watch_;
  bool done_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GlooCommunicator>> GlooCommunicator::Connect(
    gloo::rendezvous::Store& store, const GlooOptions& options) {
  if (options.size < 1 || options.rank < 0 || options.rank >= options.size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rank ", options.rank, " is outside a group of ", options.size));
  }
  try {
    gloo::transport::tcp::attr attr;
    attr.hostname = options.hostname;
    std::shared_ptr<gloo::transport::Device> device =
        gloo::transport::tcp::CreateDevice(attr);
    auto context =
        std::make_shared<gloo::rendezvous::Context>(options.rank, options.size);
    context->setTimeout(Millis(options.connect_timeout > absl::ZeroDuration()
                                   ? options.connect_timeout
                                   : options.timeout));
    context->connectFullMesh(store, device);
    context->setTimeout(Millis(options.timeout));
    return std::unique_ptr<GlooCommunicator>(new GlooCommunicator(
        std::move(context), options.rank, options.size, options.timeout));
  } catch (const std::exception& e) {
    return FromGloo(e, absl::StrCat("rank ", options.rank, " of ", options.size,
                                    " could not join its group"));
  }
}

GlooCommunicator::GlooCommunicator(std::shared_ptr<gloo::Context> context,
                                   int rank, int size, absl::Duration timeout)
    : context_(std::move(context)),
      watch_(std::make_shared<PeerWatch>(context_, rank, size)),
      rank_(rank),
      size_(size),
      timeout_(timeout) {}

GlooCommunicator::~GlooCommunicator() = default;

absl::StatusOr<std::unique_ptr<Communicator::PendingOp>>
GlooCommunicator::Isend(const void* data, size_t bytes, int peer,
                        uint64_t tag) {
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot send to rank ", peer));
  }
  if (tag >= kMaxTag) {
    return absl::InvalidArgumentError(
        absl::StrCat("tag ", tag, " is reserved"));
  }
  try {
    // Gloo's buffers are not const, but a send only reads.
    auto buffer = context_->createUnboundBuffer(const_cast<void*>(data), bytes);
    buffer->send(peer, tag);
    return std::unique_ptr<PendingOp>(new GlooOp(
        std::move(buffer), /*is_send=*/true, peer, timeout_, watch_));
  } catch (const std::exception& e) {
    return FromGloo(e, absl::StrCat("send to rank ", peer));
  }
}

absl::StatusOr<std::unique_ptr<Communicator::PendingOp>>
GlooCommunicator::Irecv(void* data, size_t bytes, int peer, uint64_t tag) {
  if (peer < 0 || peer >= size_ || peer == rank_) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot receive from rank ", peer));
  }
  if (tag >= kMaxTag) {
    return absl::InvalidArgumentError(
        absl::StrCat("tag ", tag, " is reserved"));
  }
  try {
    auto buffer = context_->createUnboundBuffer(data, bytes);
    buffer->recv(peer, tag);
    return std::unique_ptr<PendingOp>(new GlooOp(
        std::move(buffer), /*is_send=*/false, peer, timeout_, watch_));
  } catch (const std::exception& e) {
    return FromGloo(e, absl::StrCat("receive from rank ", peer));
  }
}

}  // namespace longctx
