// Metrics as an operator sees them: a real Prometheus server (Debian's
// `prometheus`) scrapes the local stack every second while it serves traffic,
// and its HTTP API (/api/v1/query) must report the time-to-first-token
// histogram, the requests, the cached prompt tokens and where they came from
// (the worker's prefix cache, or blocks restored from the store) exactly as
// the clients saw them; and every query of the Grafana dashboard
// (deploy/grafana/longctx.json) must return data.
#include <unistd.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/longctx.grpc.pb.h"
#include "services/common/testing/temp_dir.h"
#include "tests/testing/generate.h"
#include "tests/testing/process.h"
#include "tests/testing/stack.h"

namespace longctx {
namespace {

using Json = nlohmann::json;

// Tokens per KV block: the worker's default --block_size.
constexpr int kBlockSize = 256;

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrFormat("%%%02X", c);
    }
  }
  return out;
}

// FindInPath returns the path of `program` in $PATH, or "" (Process::Start
// does not search).
std::string FindInPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path == nullptr ? "" : path, ':', absl::SkipEmpty())) {
    const std::string candidate = absl::StrCat(dir, "/", program);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// A Prometheus server scraping the stack's three processes every second.
class Prometheus {
 public:
  absl::Status Start(const testing::LocalStack& stack) {
    const std::string dir = testing::NewTempDir("prometheus");
    const std::string config = dir + "/prometheus.yml";
    std::string yaml =
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n";
    auto job = [&](const std::string& name, const std::vector<int>& ports) {
      absl::StrAppend(&yaml, "  - job_name: ", name,
                      "\n    static_configs:\n      - targets: [");
      for (size_t i = 0; i < ports.size(); ++i) {
        absl::StrAppend(&yaml, i ? ", " : "", "'127.0.0.1:", ports[i], "'");
      }
      absl::StrAppend(&yaml, "]\n");
    };
    job("gateway", {stack.gateway().metrics_port});
    std::vector<int> workers;
    for (const auto& w : stack.workers()) workers.push_back(w.metrics_port);
    job("worker", workers);
    job("memory_store", {stack.store().metrics_port});
    FILE* file = std::fopen(config.c_str(), "w");
    if (file == nullptr) return absl::InternalError("cannot write " + config);
    std::fputs(yaml.c_str(), file);
    std::fclose(file);

    const std::string binary = FindInPath("prometheus");
    if (binary.empty()) {
      return absl::NotFoundError(
          "prometheus is not in PATH: install the Debian package prometheus "
          "(tools/setup.sh)");
    }
    port_ = testing::FreePort();
    auto process = testing::Process::Start(
        {binary, "--config.file=" + config,
         "--storage.tsdb.path=" + dir + "/data",
         absl::StrCat("--web.listen-address=127.0.0.1:", port_),
         "--log.level=warn"},
        dir + "/prometheus.log");
    if (!process.ok()) return process.status();
    process_ = *std::move(process);
    // Ready, and every target scraped successfully.
    const int targets = 2 + static_cast<int>(workers.size());
    return WaitFor("sum(up)", [&](double up) { return up == targets; });
  }

  // Query runs an instant query; returns its result vector.
  absl::StatusOr<Json> Query(const std::string& query) {
    auto body =
        testing::HttpGet(port_, "/api/v1/query?query=" + UrlEncode(query));
    if (!body.ok()) return body.status();
    Json json = Json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || json.value("status", "") != "success") {
      return absl::InternalError("Prometheus answered " + *body);
    }
    return json["data"]["result"];
  }

  // Value returns the value of a query whose result is one sample, or
  // NOT_FOUND when it has none yet.
  absl::StatusOr<double> Value(const std::string& query) {
    absl::StatusOr<Json> result = Query(query);
    if (!result.ok()) return result.status();
    if (!result->is_array() || result->empty()) {
      return absl::NotFoundError(query + ": no sample yet");
    }
    if (result->size() != 1) {
      return absl::InternalError(absl::StrCat(query, ": ", result->size(),
                                              " samples: ", result->dump()));
    }
    // A sample is [time, "value"].
    return std::stod((*result)[0]["value"][1].get<std::string>());
  }

  // WaitFor polls `query` until `done` accepts its value (one scrape
  // interval is a second; give up after a minute).
  template <typename Done>
  absl::Status WaitFor(const std::string& query, Done done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(60);
    absl::StatusOr<double> value = absl::NotFoundError("never queried");
    while (absl::Now() < deadline) {
      value = Value(query);
      if (value.ok() && done(*value)) return absl::OkStatus();
      absl::SleepFor(absl::Milliseconds(250));
    }
    return absl::DeadlineExceededError(absl::StrCat(
        query, " did not reach its expected value; last: ",
        value.ok() ? absl::StrCat(*value) : value.status().ToString(), "\n",
        process_.Log()));
  }

 private:
  int port_ = 0;
  testing::Process process_;
};

struct Outcome {
  grpc::Status status;
  int generated_tokens = 0;
  int cached_tokens = 0;
  double time_to_first_token = 0;
};

Outcome Generate(v1::LongContext::Stub& stub, const std::string& text,
                 int max_new_tokens) {
  v1::GenerateRequest request;
  request.set_text(text);
  request.mutable_stopping()->set_max_new_tokens(max_new_tokens);
  request.mutable_stopping()->set_ignore_eos(true);
  request.mutable_sampling()->set_temperature(0);
  testing::GenerateResult result = testing::Generate(stub, request);
  Outcome outcome;
  outcome.status = result.status;
  outcome.generated_tokens = result.last.usage().generated_tokens();
  outcome.cached_tokens = result.last.usage().cached_tokens();
  outcome.time_to_first_token =
      result.last.timings().time_to_first_token_seconds();
  return outcome;
}

// Where a repeated prompt's cached prefix comes from: the worker's memory
// (its prefix cache, the default), or the memory_store (restored) when the
// worker keeps no prefix cache.
struct CacheCase {
  const char* name;
  std::vector<std::string> worker_flags;
  bool from_memory;
};

class PrometheusTest : public ::testing::TestWithParam<CacheCase> {};

INSTANTIATE_TEST_SUITE_P(Caches, PrometheusTest,
                         ::testing::Values(CacheCase{"PrefixCache", {}, true},
                                           CacheCase{"StoreRestore",
                                                     {"--prefix_cache=false"},
                                                     false}),
                         [](const ::testing::TestParamInfo<CacheCase>& info) {
                           return std::string(info.param.name);
                         });

TEST_P(PrometheusTest, ScrapedMetricsMatchTheTraffic) {
  testing::LocalStack stack;
  testing::StackOptions options;
  options.worker_flags = GetParam().worker_flags;
  absl::Status started = stack.Start(options);
  ASSERT_TRUE(started.ok()) << started;
  Prometheus prometheus;
  absl::Status scraping = prometheus.Start(stack);
  ASSERT_TRUE(scraping.ok()) << scraping;

  auto stub = v1::LongContext::NewStub(grpc::CreateChannel(
      stack.gateway().address(), grpc::InsecureChannelCredentials()));
  std::vector<Outcome> outcomes;
  // A long document, asked about repeatedly: the first request computes its
  // 11 full blocks (byte tokenizer), later ones find them in the worker's
  // memory, or restore them from the store once the offload (behind the
  // computation) has stored them all.
  std::string document;
  for (int i = 0; document.size() < 3000; ++i) {
    absl::StrAppend(&document, "Clause ", i, " binds the parties. ");
  }
  document.resize(3000);
  const int full_blocks = 3000 / kBlockSize;
  outcomes.push_back(Generate(*stub, document, 4));
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  do {
    outcomes.push_back(Generate(*stub, document, 4));
  } while (outcomes.back().cached_tokens < full_blocks * kBlockSize &&
           absl::Now() < deadline);
  outcomes.push_back(Generate(*stub, "a short question", 3));
  outcomes.push_back(Generate(*stub, "another one", 5));

  int requests = 0, cached_tokens = 0;
  double ttft_sum = 0;
  for (const Outcome& o : outcomes) {
    ASSERT_TRUE(o.status.ok()) << o.status.error_message();
    ASSERT_GT(o.generated_tokens, 0);
    ++requests;
    cached_tokens += o.cached_tokens;
    ttft_sum += o.time_to_first_token;
  }
  ASSERT_EQ(outcomes[outcomes.size() - 3].cached_tokens,
            full_blocks * kBlockSize)
      << "the document was never served from the store";

  // The gateway's histogram holds one observation per request, summing to
  // the times to first token the clients were told.
  const std::string ttft = "longctx_time_to_first_token_seconds";
  ASSERT_TRUE(prometheus
                  .WaitFor(ttft + "_count{job=\"gateway\"}",
                           [&](double n) { return n == requests; })
                  .ok())
      << stack.Logs();
  absl::StatusOr<double> sum = prometheus.Value(ttft + "_sum");
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_GT(*sum, 0);
  EXPECT_NEAR(*sum, ttft_sum, 1e-6 * requests);
  absl::StatusOr<double> inf =
      prometheus.Value(ttft + "_bucket{job=\"gateway\",le=\"+Inf\"}");
  ASSERT_TRUE(inf.ok()) << inf.status();
  EXPECT_EQ(*inf, requests);
  // PromQL over the buckets: the median lies inside the bucket range.
  absl::StatusOr<double> median =
      prometheus.Value("histogram_quantile(0.5, " + ttft + "_bucket)");
  ASSERT_TRUE(median.ok()) << median.status();
  EXPECT_GT(*median, 0);
  EXPECT_LE(*median, 1200);

  // Requests by code, and the prefix cache: every cached token the clients
  // saw, each from the worker's memory or restored from the store.
  ASSERT_TRUE(prometheus
                  .WaitFor("longctx_requests_total{code=\"OK\"}",
                           [&](double n) { return n == requests; })
                  .ok());
  ASSERT_TRUE(prometheus
                  .WaitFor("longctx_cached_prompt_tokens_total",
                           [&](double n) { return n == cached_tokens; })
                  .ok());
  EXPECT_GE(cached_tokens, full_blocks * kBlockSize);
  const int from_memory = GetParam().from_memory ? cached_tokens : 0;
  const int restored = cached_tokens - from_memory;
  ASSERT_TRUE(
      prometheus
          .WaitFor("sum(longctx_prefix_cache_hit_tokens_total{job=\"worker\"})",
                   [&](double n) { return n == from_memory; })
          .ok());
  ASSERT_TRUE(prometheus
                  .WaitFor("sum(longctx_restore_blocks_total{job=\"worker\"})",
                           [&](double n) { return n * kBlockSize == restored; })
                  .ok());
  // The store wrote at least the document's blocks, and read the restored
  // ones.
  ASSERT_TRUE(
      prometheus
          .WaitFor("longctx_store_blocks_written_total{job=\"memory_store\"}",
                   [&](double n) { return n >= full_blocks; })
          .ok());
  ASSERT_TRUE(prometheus
                  .WaitFor("longctx_store_blocks_read_total",
                           [&](double n) { return n * kBlockSize >= restored; })
                  .ok());

  // The Grafana dashboard (deploy/grafana/longctx.json): every panel's query
  // is valid PromQL and returns data from this stack, once a rate has the
  // two scrapes it needs.
  ASSERT_TRUE(prometheus
                  .WaitFor("min(count_over_time(longctx_requests_total[1m]))",
                           [](double n) { return n >= 3; })
                  .ok());
  std::ifstream file(testing::RunfilePath("deploy/grafana/longctx.json"));
  ASSERT_TRUE(file.good()) << "deploy/grafana/longctx.json is not in runfiles";
  const Json dashboard = Json::parse(file, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(dashboard.is_discarded()) << "the dashboard is not JSON";
  int queries = 0;
  for (const Json& panel : dashboard["panels"]) {
    for (const Json& target : panel["targets"]) {
      const std::string expr = target["expr"].get<std::string>();
      absl::StatusOr<Json> result = prometheus.Query(expr);
      ASSERT_TRUE(result.ok()) << panel["title"] << ": " << result.status();
      EXPECT_FALSE(result->empty())
          << panel["title"] << ": " << expr << " returned no data";
      ++queries;
    }
  }
  EXPECT_GE(queries, 20);
}

}  // namespace
}  // namespace longctx
