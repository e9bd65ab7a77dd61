// Failures end to end: a worker lost mid-request, the gateway routing around
// a group that is down and taking it back, a memory_store lost mid-request,
// deadlines that free the sequence's KV on every rank, and a gateway's
// SIGTERM drain.
#include <atomic>
#include <csignal>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "tests/testing/generate.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using Result = testing::GenerateResult;

Result Generate(const std::string& address, int prompt_tokens, int max_new,
                absl::Duration deadline) {
  v1::GenerateRequest request;
  for (int i = 0; i < prompt_tokens; ++i) {
    request.mutable_token_ids()->add_ids((i * 31 + 7) % 250 + 3);
  }
  request.mutable_sampling()->set_temperature(0);
  request.mutable_stopping()->set_max_new_tokens(max_new);
  request.mutable_stopping()->set_ignore_eos(true);
  return testing::Generate(address, request, deadline);
}

// The worker's status (empty when it does not answer).
worker::v1::WorkerStatus Status(const testing::Endpoint& worker) {
  return testing::WorkerStatus(worker.address())
      .value_or(worker::v1::WorkerStatus());
}

// Waits until the worker holds no sequence and no KV block.
bool WaitIdle(const testing::Endpoint& worker, absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  while (absl::Now() < give_up) {
    worker::v1::WorkerStatus s = Status(worker);
    if (s.ready() && s.running_sequences() == 0 && s.kv_blocks_used() == 0) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

// A model slow enough (~100 MB of weights: several ms per token) that a
// request of a few hundred tokens is still running when the test acts.
const std::vector<std::string> kSlowModel = {
    "--hidden_size=512", "--intermediate_size=1536", "--num_layers=8"};

testing::StackOptions TwoWorkers() {
  testing::StackOptions options;
  options.model_flags = kSlowModel;
  options.num_workers = 2;  // Two groups of one rank.
  options.worker_flags = {"--block_size=16"};
  options.gateway_flags = {"--prefix_route_entries=0"};
  return options;
}

TEST(FailuresTest, AWorkerLostMidRequestIsUnavailableAndTheOtherGroupServes) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(TwoWorkers());
  ASSERT_TRUE(status.ok()) << status;
  const std::string gateway = stack.gateway().address();
  // Two long requests: one lands on each worker (least loaded first).
  std::vector<Result> during(2);
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] {
      during[i] = Generate(gateway, 100, 1000, absl::Seconds(60));
    });
  }
  absl::SleepFor(absl::Seconds(1));
  stack.worker_process(0).Signal(SIGKILL);
  ASSERT_TRUE(stack.worker_process(0).Wait(absl::Seconds(10)).ok());
  for (auto& t : clients) t.join();
  int unavailable = 0, ok = 0;
  for (const Result& r : during) {
    if (r.status.error_code() == grpc::StatusCode::UNAVAILABLE) ++unavailable;
    if (r.status.ok()) ++ok;
    EXPECT_LT(r.elapsed, absl::Seconds(60));
  }
  EXPECT_EQ(unavailable, 1) << "the request on the lost worker";
  EXPECT_EQ(ok, 1) << "the request on the other worker: "
                   << during[0].status.error_message() << " / "
                   << during[1].status.error_message() << "\n"
                   << stack.Logs();

  // Routed around: once the gateway's probe sees worker 0 gone, every request
  // goes to worker 1.
  absl::SleepFor(absl::Seconds(2));
  for (int i = 0; i < 4; ++i) {
    Result r = Generate(gateway, 40, 4, absl::Seconds(30));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }

  // Taken back: worker 0 restarts and serves again.
  ASSERT_TRUE(stack.RestartWorker(0).ok());
  ASSERT_TRUE(
      testing::WaitForServing(stack.workers()[0].address(), absl::Seconds(60))
          .ok());
  absl::SleepFor(absl::Seconds(2));  // The gateway's next probe.
  bool served_by_0 = false;
  for (int i = 0; i < 10 && !served_by_0; ++i) {
    std::vector<std::thread> pair;
    std::vector<Result> results(2);
    for (int k = 0; k < 2; ++k) {
      pair.emplace_back([&, k] {
        results[k] = Generate(gateway, 60, 100, absl::Seconds(30));
      });
    }
    absl::SleepFor(absl::Milliseconds(300));
    served_by_0 = Status(stack.workers()[0]).running_sequences() > 0;
    for (auto& t : pair) t.join();
    for (const Result& r : results) {
      EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    }
  }
  EXPECT_TRUE(served_by_0) << "the restarted worker never got a request";
}

// A group lost before the request's first token is replaced by another: the
// client never sees the failure.
TEST(FailuresTest, AGroupLostBeforeTheFirstTokenIsReplacedByAnother) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(TwoWorkers());
  ASSERT_TRUE(status.ok()) << status;
  Result result;
  // A long prompt: seconds of prefill before the first token.
  std::thread client([&] {
    result = Generate(stack.gateway().address(), 4000, 4, absl::Seconds(120));
  });
  int busy = -1;
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (busy < 0 && absl::Now() < give_up) {
    for (int i = 0; i < 2 && busy < 0; ++i) {
      if (Status(stack.workers()[i]).running_sequences() > 0) busy = i;
    }
    if (busy < 0) absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_GE(busy, 0) << "the request never started";
  stack.worker_process(busy).Signal(SIGKILL);
  client.join();
  EXPECT_TRUE(result.status.ok()) << result.status.error_message() << "\n"
                                  << stack.Logs();
  EXPECT_EQ(result.tokens.size(), 4u);
  EXPECT_THAT(stack.gateway_process().Log(),
              ::testing::HasSubstr("failed before the first token"));
}

// A stopped worker (SIGSTOP: alive, connected, silent) no longer answers the
// gateway's probes, so new requests go to the other group.
TEST(FailuresTest, AStoppedWorkerIsRoutedAround) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(TwoWorkers());
  ASSERT_TRUE(status.ok()) << status;
  stack.worker_process(0).Signal(SIGSTOP);
  absl::SleepFor(absl::Seconds(3));  // The gateway's next probes.
  for (int i = 0; i < 4; ++i) {
    Result r = Generate(stack.gateway().address(), 40, 4, absl::Seconds(20));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  stack.worker_process(0).Signal(SIGCONT);
}

// The probe: a follower rank that hangs (SIGSTOP) used to stall its
// group for the op timeout while the leader still reported ready. The gateway
// probes every rank, so the group turns not ready and new requests go to the
// other group at once.
TEST(FailuresTest, AGroupWithAStoppedRankIsRoutedAround) {
  testing::LocalStack stack;
  testing::StackOptions options;
  options.num_workers = 4;  // Two groups of two ranks.
  options.group_size = 2;
  options.gateway_flags = {"--prefix_route_entries=0"};
  absl::Status status = stack.Start(options);
  ASSERT_TRUE(status.ok()) << status;
  stack.worker_process(1).Signal(SIGSTOP);  // Rank 1 of group 0.
  absl::SleepFor(absl::Seconds(3));         // The gateway's next probes.
  for (int i = 0; i < 4; ++i) {
    Result r = Generate(stack.gateway().address(), 40, 4, absl::Seconds(20));
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  }
  EXPECT_EQ(Status(stack.workers()[2]).ready(), true);
  stack.worker_process(1).Signal(SIGCONT);
}

TEST(FailuresTest, AStoreLostMidRequestCostsOnlyItsCache) {
  testing::LocalStack stack;
  absl::Status status = stack.Start(TwoWorkers());
  ASSERT_TRUE(status.ok()) << status;
  const std::string gateway = stack.gateway().address();
  Result cold = Generate(gateway, 500, 50, absl::Seconds(60));
  ASSERT_TRUE(cold.status.ok()) << cold.status.error_message();
  Result during;
  std::thread client(
      [&] { during = Generate(gateway, 500, 300, absl::Seconds(60)); });
  absl::SleepFor(absl::Milliseconds(300));
  stack.store_process().Signal(SIGKILL);
  client.join();
  EXPECT_TRUE(during.status.ok()) << during.status.error_message();
  // With the store gone, prompts are recomputed, to the same tokens.
  Result after = Generate(gateway, 500, 50, absl::Seconds(60));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, cold.tokens);
}

TEST(FailuresTest, ADeadlineEndsTheRequestAndFreesItsKvOnEveryRank) {
  for (int P : {1, 2}) {
    testing::StackOptions options;
    options.num_workers = P;
    options.group_size = P;
    options.worker_flags = {"--block_size=16", "--prefix_cache=false"};
    options.model_flags = kSlowModel;
    testing::LocalStack stack;
    absl::Status status = stack.Start(options);
    ASSERT_TRUE(status.ok()) << status;
    Result r = Generate(stack.gateway().address(), 300, 4000,
                        absl::Milliseconds(1500));
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
        << "P=" << P << ": " << r.status.error_message();
    EXPECT_LT(r.elapsed, absl::Seconds(5));
    // The leader's engine let the sequence go: no block of the group is held.
    EXPECT_TRUE(WaitIdle(stack.workers()[0], absl::Seconds(10))) << "P=" << P;
    // And the group serves the next request.
    Result next = Generate(stack.gateway().address(), 50, 5, absl::Seconds(30));
    EXPECT_TRUE(next.status.ok()) << next.status.error_message();
  }
}

// SIGTERM on the gateway: new requests are refused at once, a running one
// finishes when it can within --grace_period_seconds, and one that outlives the
// grace is cancelled at it, which frees its KV on the worker; either way the
// gateway exits with code 0.
TEST(FailuresTest, SigtermDrainsTheGatewayAndCancelsWhatOutlivesTheGrace) {
  struct Case {
    int grace_seconds;
    int max_new_tokens;
    bool finishes;
  };
  for (const Case& c : {Case{60, 150, true}, Case{1, 4000, false}}) {
    SCOPED_TRACE(absl::StrCat("grace ", c.grace_seconds, " s"));
    testing::StackOptions options;
    options.model_flags = kSlowModel;
    options.worker_flags = {"--block_size=16", "--prefix_cache=false"};
    options.gateway_flags = {
        absl::StrCat("--grace_period_seconds=", c.grace_seconds)};
    testing::LocalStack stack;
    absl::Status status = stack.Start(options);
    ASSERT_TRUE(status.ok()) << status;
    const std::string gateway = stack.gateway().address();
    Result running;
    std::atomic<bool> running_done{false};
    std::thread client([&] {
      running = Generate(gateway, 100, c.max_new_tokens, absl::Seconds(120));
      running_done = true;
    });
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (Status(stack.workers()[0]).running_sequences() == 0 &&
           absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    const absl::Time term = absl::Now();
    stack.gateway_process().Signal(SIGTERM);
    EXPECT_FALSE(running_done) << "the request ended before the SIGTERM";
    // New requests are refused with UNAVAILABLE (clients retry elsewhere) as
    // soon as the gateway has seen the signal; one sent before is served.
    Result refused;
    const absl::Time refuse_by = absl::Now() + absl::Seconds(10);
    while (absl::Now() < refuse_by) {
      refused = Generate(gateway, 10, 2, absl::Seconds(10));
      if (!refused.status.ok()) break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << refused.status.error_message();
    EXPECT_THAT(refused.status.error_message(),
                ::testing::HasSubstr("shutting down"));
    client.join();
    absl::StatusOr<int> code =
        stack.gateway_process().Wait(absl::Seconds(c.grace_seconds + 30));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_EQ(*code, 0) << stack.gateway_process().Log();
    if (c.finishes) {
      EXPECT_TRUE(running.status.ok()) << running.status.error_message();
      EXPECT_EQ(running.tokens.size(), static_cast<size_t>(c.max_new_tokens));
    } else {
      EXPECT_FALSE(running.status.ok());
      EXPECT_LT(running.tokens.size(), static_cast<size_t>(c.max_new_tokens));
      EXPECT_LT(absl::Now() - term, absl::Seconds(c.grace_seconds + 10));
      // The cancellation reached the worker: its sequence and KV are gone.
      EXPECT_TRUE(WaitIdle(stack.workers()[0], absl::Seconds(10)));
    }
  }
}

}  // namespace
}  // namespace longctx
