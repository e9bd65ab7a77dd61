// bench_gateway: the latency the gateway adds to a request, measured against a
// running stack. The same small request (token ids, greedy, cache disabled,
// --max_new_tokens new tokens) goes --requests times through the gateway
// (longctx.v1.LongContext/Generate) and straight to a worker group's leader
// (longctx.worker.v1.Worker/Generate), one at a time, the two paths
// interleaved (and their order alternated) so that both see the same moment of
// a shared machine. Prints p50/p90/p99 of each path's end-to-end and
// time-to-first-token latency and of the paired differences.
//
// Point it at single-rank workers (LONGCTX_GROUP_SIZE=1 deploy/local/run.sh)
// so that the direct path computes exactly what the gateway's worker does:
//   w=127.0.0.1:50061,127.0.0.1:50062
//   bazel run -c opt //tools/bench_gateway -- --workers=$w
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/longctx.grpc.pb.h"
#include "proto/worker.grpc.pb.h"
#include "services/common/status_util.h"

ABSL_FLAG(std::string, gateway, "127.0.0.1:50051", "Gateway host:port.");
ABSL_FLAG(std::string, workers, "127.0.0.1:50061",
          "Worker group leaders (rank 0) behind that gateway, host:port list; "
          "direct requests go to each in turn.");
ABSL_FLAG(int, requests, 1000, "Measured requests per path.");
ABSL_FLAG(int, warmup_requests, 50,
          "Requests per path sent first, not counted.");
ABSL_FLAG(int, prompt_tokens, 16, "Prompt length in tokens.");
ABSL_FLAG(int, max_new_tokens, 1, "New tokens per request.");
ABSL_FLAG(int, wait_ready_seconds, 60,
          "How long to wait for the gateway to serve a first request.");
ABSL_FLAG(int, deadline_seconds, 60, "Deadline per request.");

namespace longctx {
namespace {

// One request's latencies, in seconds from the call's start.
struct Timing {
  double first_token = 0;
  double total = 0;
};

// Streams one call to its end; `Response` is the path's message type, and
// `start_call` starts the call on the given context.
template <typename Response, typename StartCall>
absl::StatusOr<Timing> TimeCall(StartCall start_call) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_deadline_seconds))));
  Timing timing;
  bool first = true;
  const absl::Time start = absl::Now();
  std::unique_ptr<grpc::ClientReader<Response>> reader = start_call(&context);
  Response message;
  while (reader->Read(&message)) {
    if (first && message.token_ids_size() > 0) {
      timing.first_token = absl::ToDoubleSeconds(absl::Now() - start);
      first = false;
    }
  }
  const grpc::Status status = reader->Finish();
  timing.total = absl::ToDoubleSeconds(absl::Now() - start);
  if (!status.ok()) return FromGrpcStatus(status);
  if (first) return absl::InternalError("the stream carried no token");
  return timing;
}

class Paths {
 public:
  Paths(const std::string& gateway, const std::vector<std::string>& workers) {
    gateway_ = v1::LongContext::NewStub(
        grpc::CreateChannel(gateway, grpc::InsecureChannelCredentials()));
    for (const std::string& address : workers) {
      workers_.push_back(worker::v1::Worker::NewStub(
          grpc::CreateChannel(address, grpc::InsecureChannelCredentials())));
    }
  }

  absl::StatusOr<v1::ModelInfo> ModelInfo() {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    v1::ModelInfo info;
    grpc::Status status =
        gateway_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info);
    if (!status.ok()) return FromGrpcStatus(status);
    return info;
  }

  // Builds both paths' requests for the same prompt: what the gateway would
  // send the worker for `gateway_request_` (greedy, no stop token, cache
  // disabled).
  void SetPrompt(const std::vector<int32_t>& ids, int max_new_tokens) {
    gateway_request_.mutable_token_ids()->mutable_ids()->Assign(ids.begin(),
                                                                ids.end());
    v1::SamplingParams* sampling = gateway_request_.mutable_sampling();
    sampling->set_temperature(0);
    sampling->set_top_p(1);
    sampling->set_seed(1);
    gateway_request_.mutable_stopping()->set_max_new_tokens(max_new_tokens);
    gateway_request_.mutable_stopping()->set_ignore_eos(true);
    gateway_request_.set_cache_policy(v1::CACHE_POLICY_DISABLED);

    worker_request_.mutable_prompt_token_ids()->Assign(ids.begin(), ids.end());
    *worker_request_.mutable_sampling() = *sampling;
    worker_request_.set_max_new_tokens(max_new_tokens);
    worker_request_.set_cache_policy(v1::CACHE_POLICY_DISABLED);
  }

  absl::StatusOr<Timing> ThroughGateway() {
    return TimeCall<v1::GenerateResponse>([&](grpc::ClientContext* context) {
      return gateway_->Generate(context, gateway_request_);
    });
  }

  absl::StatusOr<Timing> ToWorker(int i) {
    worker::v1::Worker::Stub* stub = workers_[i % workers_.size()].get();
    return TimeCall<worker::v1::GenerateResponse>(
        [&](grpc::ClientContext* context) {
          return stub->Generate(context, worker_request_);
        });
  }

 private:
  std::unique_ptr<v1::LongContext::Stub> gateway_;
  std::vector<std::unique_ptr<worker::v1::Worker::Stub>> workers_;
  v1::GenerateRequest gateway_request_;
  worker::v1::GenerateRequest worker_request_;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100 * v.size()))];
}

double Mean(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / v.size();
}

void PrintRow(const char* name, const std::vector<double>& seconds) {
  absl::PrintF("| %s | %.3f | %.3f | %.3f | %.3f |\n", name,
               1e3 * Percentile(seconds, 50), 1e3 * Percentile(seconds, 90),
               1e3 * Percentile(seconds, 99), 1e3 * Mean(seconds));
}

int Run() {
  const std::vector<std::string> workers =
      absl::StrSplit(absl::GetFlag(FLAGS_workers), ',', absl::SkipEmpty());
  const int requests = absl::GetFlag(FLAGS_requests);
  const int prompt_tokens = absl::GetFlag(FLAGS_prompt_tokens);
  const int max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  if (workers.empty() || requests < 1 || prompt_tokens < 1 ||
      max_new_tokens < 1) {
    std::fprintf(stderr,
                 "bench_gateway: --workers must name at least one worker and "
                 "--requests, --prompt_tokens, --max_new_tokens be >= 1\n");
    return 2;
  }
  Paths paths(absl::GetFlag(FLAGS_gateway), workers);

  // Wait for the stack: the model's vocabulary, then one served request
  // through the gateway and one by each worker (the gateway serves once any
  // group is ready; the others may still be loading).
  const absl::Time ready_by =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_wait_ready_seconds));
  absl::Status last = absl::UnknownError("not tried");
  absl::StatusOr<v1::ModelInfo> info;
  for (;;) {
    info = paths.ModelInfo();
    if (info.ok()) {
      std::vector<int32_t> ids(prompt_tokens);
      for (int i = 0; i < prompt_tokens; ++i) {
        ids[i] = (i * 7919 + 13) % info->vocab_size();
      }
      paths.SetPrompt(ids, max_new_tokens);
      last = paths.ThroughGateway().status();
      for (size_t w = 0; last.ok() && w < workers.size(); ++w) {
        const absl::Status direct =
            paths.ToWorker(static_cast<int>(w)).status();
        if (!direct.ok()) {
          last = absl::Status(
              direct.code(),
              absl::StrCat("worker ", workers[w], ": ", direct.message()));
        }
      }
      if (last.ok()) break;
    } else {
      last = info.status();
    }
    if (absl::Now() > ready_by) {
      std::fprintf(stderr, "bench_gateway: the stack is not serving: %s\n",
                   last.ToString().c_str());
      return 1;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }

  std::vector<double> gateway_total, worker_total, diff_total;
  std::vector<double> gateway_first, worker_first, diff_first;
  const int warmup = absl::GetFlag(FLAGS_warmup_requests);
  for (int i = 0; i < warmup + requests; ++i) {
    absl::StatusOr<Timing> through_gateway, direct;
    // Alternate which path goes first, so neither always follows the other.
    if (i % 2 == 0) {
      through_gateway = paths.ThroughGateway();
      direct = paths.ToWorker(i / 2);
    } else {
      direct = paths.ToWorker(i / 2);
      through_gateway = paths.ThroughGateway();
    }
    for (const auto* result : {&through_gateway, &direct}) {
      if (!result->ok()) {
        std::fprintf(stderr,
                     "bench_gateway: request %d via the %s failed: %s\n", i,
                     result == &direct ? "worker" : "gateway",
                     result->status().ToString().c_str());
        return 1;
      }
    }
    if (i < warmup) continue;
    gateway_total.push_back(through_gateway->total);
    worker_total.push_back(direct->total);
    diff_total.push_back(through_gateway->total - direct->total);
    gateway_first.push_back(through_gateway->first_token);
    worker_first.push_back(direct->first_token);
    diff_first.push_back(through_gateway->first_token - direct->first_token);
  }

  absl::PrintF(
      "# gateway overhead: %d sequential requests per path (after %d "
      "warm-up), %d prompt tokens, %d new token(s), greedy, cache disabled; "
      "model %s, %d worker(s) called directly\n\n",
      requests, warmup, prompt_tokens, max_new_tokens, info->name(),
      static_cast<int>(workers.size()));
  absl::PrintF("| latency (ms) | p50 | p90 | p99 | mean |\n");
  absl::PrintF("|---|---|---|---|---|\n");
  PrintRow("end to end, through the gateway", gateway_total);
  PrintRow("end to end, worker directly", worker_total);
  PrintRow("end to end, gateway minus worker (paired)", diff_total);
  PrintRow("first token, through the gateway", gateway_first);
  PrintRow("first token, worker directly", worker_first);
  PrintRow("first token, gateway minus worker (paired)", diff_first);
  const double added = Percentile(diff_total, 50);
  absl::PrintF(
      "\nGateway added latency: p50 %.3f ms, p99 %.3f ms (target p50 < 1 ms: "
      "%s)\n",
      1e3 * added, 1e3 * Percentile(diff_total, 99),
      added < 1e-3 ? "met" : "missed");
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures the latency the gateway adds against calling a worker "
      "directly. Flags: --gateway, --workers, --requests, --warmup_requests, "
      "--prompt_tokens, --max_new_tokens.");
  absl::ParseCommandLine(argc, argv);
  return longctx::Run();
}
