#include "parallel/gloo_communicator.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
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

class GlooOp : public Communicator::PendingOp {
 public:
  GlooOp(std::unique_ptr<gloo::transport::UnboundBuffer> buffer, bool is_send,
         int peer, absl::Duration timeout)
      : buffer_(std::move(buffer)),
        is_send_(is_send),
        peer_(peer),
        timeout_(timeout) {}

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
    try {
      bool ok = is_send_ ? buffer_->waitSend(Millis(timeout))
                         : buffer_->waitRecv(Millis(timeout));
      if (!ok) return absl::AbortedError(absl::StrCat(what, " was aborted"));
    } catch (const std::exception& e) {
      return FromGloo(e, what);
    }
    return absl::OkStatus();
  }

 private:
  std::unique_ptr<gloo::transport::UnboundBuffer> buffer_;
  const bool is_send_;
  const int peer_;
  const absl::Duration timeout_;
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
  try {
    // Gloo's buffers are not const, but a send only reads.
    auto buffer = context_->createUnboundBuffer(const_cast<void*>(data), bytes);
    buffer->send(peer, tag);
    return std::unique_ptr<PendingOp>(
        new GlooOp(std::move(buffer), /*is_send=*/true, peer, timeout_));
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
  try {
    auto buffer = context_->createUnboundBuffer(data, bytes);
    buffer->recv(peer, tag);
    return std::unique_ptr<PendingOp>(
        new GlooOp(std::move(buffer), /*is_send=*/false, peer, timeout_));
  } catch (const std::exception& e) {
    return FromGloo(e, absl::StrCat("receive from rank ", peer));
  }
}

}  // namespace longctx
