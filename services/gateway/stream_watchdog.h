// StreamWatchdog: ends client streams that stop reading. A Generate stream
// writes one message at a time; a client that never reads lets HTTP/2 flow
// control stall the write, and the stream would hold its admission slot, its
// worker sequence and its KV blocks forever. The watchdog cancels a stream
// whose write has been pending longer than the write timeout
// (--stream_write_timeout), which frees all of them.
#ifndef LONGCTX_SERVICES_GATEWAY_STREAM_WATCHDOG_H_
#define LONGCTX_SERVICES_GATEWAY_STREAM_WATCHDOG_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <list>
#include <memory>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace longctx {

// StreamWatchdog is thread-safe. One thread checks every stream each tick.
class StreamWatchdog {
 public:
  // A write pending for longer than `write_timeout` cancels its stream;
  // checked every `tick` (so a stalled stream ends between write_timeout and
  // write_timeout + tick after its write started).
  explicit StreamWatchdog(absl::Duration write_timeout,
                          absl::Duration tick = absl::Seconds(1));
  // Stops the thread; every Watch handle must be gone.
  ~StreamWatchdog();

  struct Entry;
  // Watch is one stream's registration; destroying it unregisters the stream.
  // `cancel` runs without the watchdog's lock and may run just after the
  // Watch is destroyed: it must stay safe to call (e.g. check, under its own
  // lock, that the stream still exists).
  class Watch {
   public:
    ~Watch();
    // A write to the client started / completed. Lock-free: they run for
    // every message of every stream.
    void WriteStarted();
    void WriteDone();

   private:
    friend class StreamWatchdog;
    Watch(StreamWatchdog* owner, std::list<Entry>::iterator entry)
        : owner_(owner), entry_(entry) {}
    StreamWatchdog* const owner_;
    const std::list<Entry>::iterator entry_;
  };

  // Registers a stream; `cancel` is called at most once, on the watchdog's
  // thread, when one of its writes stalls.
  std::unique_ptr<Watch> Register(std::function<void()> cancel);

  // Streams cancelled so far.
  int64_t cancelled() const;

  struct Entry {
    explicit Entry(std::function<void()> cancel) : cancel(std::move(cancel)) {}
    // When the pending write started (absl::ToUnixNanos), or kNoWrite.
    std::atomic<int64_t> pending_since_ns{kNoWrite};
    std::function<void()> cancel;
    bool cancelled = false;  // Under the watchdog's mutex.
  };
  static constexpr int64_t kNoWrite = std::numeric_limits<int64_t>::max();

 private:
  void Loop();

  const absl::Duration write_timeout_;
  const absl::Duration tick_;
  mutable absl::Mutex mu_;
  std::list<Entry> entries_ ABSL_GUARDED_BY(mu_);
  int64_t cancelled_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_GATEWAY_STREAM_WATCHDOG_H_
