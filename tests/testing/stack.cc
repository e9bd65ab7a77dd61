#include "tests/testing/stack.h"

#include <iostream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "services/common/testing/temp_dir.h"

namespace longctx::testing {

constexpr absl::Duration kStartTimeout = absl::Seconds(90);

std::string Endpoint::address() const {
  return absl::StrCat("127.0.0.1:", grpc_port);
}

std::string Endpoint::internal_address() const {
  return absl::StrCat("127.0.0.1:", internal_port);
}

Endpoint NewEndpoint() { return {FreePort(), FreePort(), FreePort()}; }

std::vector<std::string> CommonFlags(const Endpoint& e) {
  return {absl::StrCat("--listen_address=127.0.0.1:", e.grpc_port),
          absl::StrCat("--metrics_address=127.0.0.1:", e.metrics_port),
          "--grace_period_seconds=5"};
}

std::vector<std::string> GatewayFlags(const Endpoint& e) {
  std::vector<std::string> flags = CommonFlags(e);
  flags.push_back(
      absl::StrCat("--internal_listen_address=", e.internal_address()));
  return flags;
}

absl::Status MakeTinyModel(const std::string& dir,
                           const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {
      RunfilePath("tools/make_tiny_model/make_tiny_model"), "--out=" + dir};
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  std::string output;
  absl::StatusOr<int> rc = RunCommand(argv, "", &output);
  if (!rc.ok()) return rc.status();
  if (*rc != 0) {
    return absl::InternalError(
        absl::StrCat("make_tiny_model failed: ", output));
  }
  return absl::OkStatus();
}

namespace {

// Waits until the gateway's probes have seen `groups` groups ready (its
// longctx_gateway_ready_groups gauge): requests then spread over all of them.
absl::Status WaitForReadyGroups(int metrics_port, int groups,
                                absl::Duration timeout) {
  const std::string name = "longctx_gateway_ready_groups ";
  const absl::Time give_up = absl::Now() + timeout;
  std::string last;
  while (absl::Now() < give_up) {
    absl::StatusOr<std::string> page = HttpGet(metrics_port, "/metrics");
    if (page.ok()) {
      for (absl::string_view line : absl::StrSplit(*page, '\n')) {
        if (!absl::StartsWith(line, name)) continue;
        last = std::string(line);
        double ready = 0;
        if (absl::SimpleAtod(line.substr(name.size()), &ready) &&
            ready >= groups) {
          return absl::OkStatus();
        }
      }
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("the gateway did not see ", groups,
                   " ready worker groups; last: ", last));
}

}  // namespace

absl::Status LocalStack::Start(const StackOptions& options) {
  dir_ = NewTempDir("stack");
  model_dir_ = dir_ + "/model";
  absl::Status status = MakeTinyModel(model_dir_, options.model_flags);
  if (!status.ok()) return status;

  store_ep_ = NewEndpoint();
  std::vector<std::string> argv = {RunfilePath("memory_store/memory_store"),
                                   "--data_dir=" + dir_ + "/store"};
  for (const auto& f : CommonFlags(store_ep_)) argv.push_back(f);
  for (const auto& f : options.store_flags) argv.push_back(f);
  absl::StatusOr<Process> p = Process::Start(argv, dir_ + "/memory_store.log");
  if (!p.ok()) return p.status();
  processes_.push_back(*std::move(p));

  const int P = options.group_size;
  if (P < 1 || options.num_workers % P != 0) {
    return absl::InvalidArgumentError("group_size must divide num_workers");
  }
  // The gateway's addresses first: the ranks of a group meet at its internal
  // one.
  gateway_ep_ = NewEndpoint();
  std::vector<std::string> worker_addresses;
  for (int i = 0; i < options.num_workers; ++i) {
    Endpoint e = NewEndpoint();
    worker_eps_.push_back(e);
    worker_addresses.push_back(e.address());
    argv = {RunfilePath("services/worker/worker"), "--model=" + model_dir_,
            "--memory_store=" + store_ep_.address(), "--threads=1",
            "--kv_cache_bytes=268435456",
            // Tests start many workers: pages become resident as used.
            "--kv_cache_prefault=false",
            absl::StrCat("--group_id=group-", i / P),
            absl::StrCat("--rank=", i % P), absl::StrCat("--group_size=", P),
            "--rendezvous_address=" + gateway_ep_.internal_address()};
    for (const auto& f : CommonFlags(e)) argv.push_back(f);
    for (const auto& f : options.worker_flags) argv.push_back(f);
    worker_argv_.push_back(argv);
    p = Process::Start(argv, absl::StrCat(dir_, "/worker", i, ".log"));
    if (!p.ok()) return p.status();
    processes_.push_back(*std::move(p));
  }

  argv = {RunfilePath("services/gateway/gateway"), "--model=" + model_dir_,
          "--workers=" + absl::StrJoin(worker_addresses, ","),
          absl::StrCat("--group_size=", P),
          "--memory_store=" + store_ep_.address()};
  for (const auto& f : GatewayFlags(gateway_ep_)) argv.push_back(f);
  for (const auto& f : options.gateway_flags) argv.push_back(f);
  p = Process::Start(argv, dir_ + "/gateway.log");
  if (!p.ok()) return p.status();
  processes_.push_back(*std::move(p));

  for (const Endpoint& e : worker_eps_) {
    status = WaitForServing(e.address(), kStartTimeout, options.security);
    if (!status.ok())
      return absl::InternalError(absl::StrCat(status.message(), "\n", Logs()));
  }
  for (const Endpoint* e : {&store_ep_, &gateway_ep_}) {
    status = WaitForServing(
        e->address(), kStartTimeout,
        e == &gateway_ep_ ? options.gateway_security.value_or(options.security)
                          : options.security);
    if (!status.ok())
      return absl::InternalError(absl::StrCat(status.message(), "\n", Logs()));
  }
  status = WaitForReadyGroups(gateway_ep_.metrics_port, options.num_workers / P,
                              kStartTimeout);
  if (!status.ok()) {
    return absl::InternalError(absl::StrCat(status.message(), "\n", Logs()));
  }
  return absl::OkStatus();
}

absl::Status LocalStack::RestartWorker(int i) {
  absl::StatusOr<Process> p = Process::Start(
      worker_argv_[i],
      absl::StrCat(dir_, "/worker", i, ".", ++restarts_, ".log"));
  if (!p.ok()) return p.status();
  processes_[1 + i] = *std::move(p);
  return absl::OkStatus();
}

std::string LocalStack::Logs() const {
  std::string out;
  for (const Process& p : processes_) {
    absl::StrAppend(&out, "==== ", p.log_path(), "\n", p.Log());
  }
  return out;
}

namespace {

bool CurrentTestFailed() {
  const ::testing::UnitTest* unit = ::testing::UnitTest::GetInstance();
  if (const ::testing::TestInfo* test = unit->current_test_info()) {
    return test->result()->Failed();
  }
  const ::testing::TestSuite* suite = unit->current_test_suite();
  return suite != nullptr && suite->failed_test_count() > 0;
}

}  // namespace

LocalStack::~LocalStack() {
  if (processes_.empty() || !CurrentTestFailed()) return;
  std::string states;
  for (Process& p : processes_) {
    absl::StrAppend(&states, "  ", p.log_path(), ": ",
                    p.Running() ? "running"
                                : absl::StrCat("exited, status ",
                                               *p.Wait(absl::ZeroDuration())),
                    "\n");
  }
  std::cerr << "==== the test failed; the stack's processes:\n"
            << states << Logs() << std::flush;
}

}  // namespace longctx::testing
