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
  entries_.push_front(Entry{absl::InfiniteFuture(), std::move(cancel), false});
  return std::unique_ptr<Watch>(new Watch(this, entries_.begin()));
}

StreamWatchdog::Watch::~Watch() {
  absl::MutexLock lock(&owner_->mu_);
  owner_->entries_.erase(entry_);
}

void StreamWatchdog::Watch::WriteStarted() {
  absl::MutexLock lock(&owner_->mu_);
  entry_->pending_since = absl::Now();
}

void StreamWatchdog::Watch::WriteDone() {
  absl::MutexLock lock(&owner_->mu_);
  entry_->pending_since = absl::InfiniteFuture();
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
      const absl::Time stalled_before = absl::Now() - write_timeout_;
      for (Entry& entry : entries_) {
        if (entry.cancelled || entry.pending_since > stalled_before) continue;
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
