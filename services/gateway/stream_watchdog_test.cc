#include "services/gateway/stream_watchdog.h"

#include <atomic>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace longctx {
namespace {

TEST(StreamWatchdogTest, CancelsOnlyStreamsWhoseWriteStalls) {
  StreamWatchdog watchdog(absl::Milliseconds(100), absl::Milliseconds(10));
  std::atomic<int> stalled_cancels{0}, reading_cancels{0}, idle_cancels{0};
  auto stalled = watchdog.Register([&] { ++stalled_cancels; });
  auto reading = watchdog.Register([&] { ++reading_cancels; });
  auto idle = watchdog.Register([&] { ++idle_cancels; });
  stalled->WriteStarted();
  // `reading` completes each write quickly; `idle` has no write pending
  // (waiting for the worker is not the client's fault).
  const absl::Time end = absl::Now() + absl::Milliseconds(500);
  while (absl::Now() < end) {
    reading->WriteStarted();
    absl::SleepFor(absl::Milliseconds(5));
    reading->WriteDone();
  }
  EXPECT_EQ(stalled_cancels, 1);  // Once, however long it stays stalled.
  EXPECT_EQ(reading_cancels, 0);
  EXPECT_EQ(idle_cancels, 0);
  EXPECT_EQ(watchdog.cancelled(), 1);
}

TEST(StreamWatchdogTest, AnUnregisteredStreamIsNeverCancelled) {
  StreamWatchdog watchdog(absl::Milliseconds(20), absl::Milliseconds(5));
  std::atomic<int> cancels{0};
  {
    auto watch = watchdog.Register([&] { ++cancels; });
    watch->WriteStarted();
  }
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(cancels, 0);
}

}  // namespace
}  // namespace longctx
