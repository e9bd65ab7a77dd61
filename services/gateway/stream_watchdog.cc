#include "services/gateway/stream_watchdog.h"

#include <utility>
#include <vector>

#include "absl/time/clock.h"

namespace longctx {

StreamWatchdog::StreamWatchdog(absl::Duration write_timeout,
                               absl::Duration tick)
    : write_timeout_(write_timeout), tick_(tick) {
  thread_ = std::thread([this] { Loop(); });
}

StreamWatchdog::~StreamWatchdog() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

std::unique_ptr<StreamWatchdog::Watch> StreamWatchdog::Register(
    std::function<void()> cancel) {
  absl::MutexLock lock(&mu_);
  entries_.emplace_front(std::move(cancel));
  return std::unique_ptr<Watch>(new Watch(this, entries_.begin()));
}

StreamWatchdog::Watch::~Watch() {
  absl::MutexLock lock(&owner_->mu_);
  owner_->entries_.erase(entry_);
}

// The entry stays in the list (and valid) until this Watch is destroyed,
// so reaching it needs no lock.
void StreamWatchdog::Watch::WriteStarted() {
  entry_->pending_since_ns.store(absl::ToUnixNanos(absl::Now()),
                                 std::memory_order_relaxed);
}

void StreamWatchdog::Watch::WriteDone() {
  entry_->pending_since_ns.store(kNoWrite, std::memory_order_relaxed);
}

int64_t StreamWatchdog::cancelled() const {
  absl::MutexLock lock(&mu_);
  return cancelled_;
}

void StreamWatchdog::Loop() {
  while (true) {
    std::vector<std::function<void()>> to_cancel;
    {
      absl::MutexLock lock(&mu_);
      auto stopping = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_;
      };
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping), tick_)) return;
      const int64_t stalled_before =
          absl::ToUnixNanos(absl::Now() - write_timeout_);
      for (Entry& entry : entries_) {
        if (entry.cancelled ||
            entry.pending_since_ns.load(std::memory_order_relaxed) >
                stalled_before) {
          continue;
        }
        entry.cancelled = true;
        ++cancelled_;
        to_cancel.push_back(entry.cancel);
      }
    }
    // Outside the lock: cancelling may run the stream's reactions, which
    // unregister it.
    for (const auto& cancel : to_cancel) cancel();
  }
}

}  // namespace longctx
