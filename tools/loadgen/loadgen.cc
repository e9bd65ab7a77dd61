// loadgen: drives a longctx gateway with long documents and reports latency and
// throughput.
//
// Workloads (--workload):
//   book          many questions over the same few long documents: every
//   request is
//                 one of --documents documents of --document_chars characters,
//                 followed by a short question (shared prefixes, as a cache
//                 sees them)
//   conversation  multi-turn conversations that grow: each request resends the
//                 conversation so far plus a new turn
//   files         the files of --files_dir, in turn
// Load: --concurrency requests in flight, or a Poisson arrival --rate (requests
// per second) with up to --concurrency in flight; for --duration_seconds or
// --requests, after --warmup_requests that are not counted. A progress line
// updates every second on stderr; the table (or --json) goes to stdout.
// --address, --token/--token_file and --tls* are those of every client
// (tools/clients/cpp/client_flags.h).
//
//   bazel run -c opt //tools/loadgen -- --concurrency=8 --duration_seconds=60
#include <dirent.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "tools/clients/cpp/client_flags.h"
#include "tools/clients/cpp/longctx_client.h"

ABSL_FLAG(std::string, workload, "book", "book, conversation or files.");
ABSL_FLAG(int, documents, 4, "Distinct documents (book) or conversations.");
ABSL_FLAG(int, document_chars, 20000, "Characters per generated document.");
ABSL_FLAG(std::string, files_dir, "",
          "Folder of prompt files (workload files).");
ABSL_FLAG(int, concurrency, 4, "Most requests in flight.");
ABSL_FLAG(double, rate, 0, "Poisson arrivals per second; 0 = closed loop.");
ABSL_FLAG(int, duration_seconds, 30,
          "Measured duration (when --requests is 0).");
ABSL_FLAG(int, requests, 0,
          "Measured requests; 0 = run for --duration_seconds.");
ABSL_FLAG(int, warmup_requests, 2, "Requests sent first and not counted.");
ABSL_FLAG(int, max_new_tokens, 32, "New tokens per request.");
ABSL_FLAG(int, deadline_seconds, 600, "Deadline per request.");
ABSL_FLAG(uint64_t, seed, 1, "Seed of the workload and arrivals.");
ABSL_FLAG(bool, json, false, "Print the results as JSON instead of a table.");
ABSL_FLAG(int, wait_ready_seconds, 60,
          "How long to wait for the gateway to serve a first request (a stack "
          "that is still starting); 0 does not wait.");

namespace longctx {
namespace {

// Words for generated text: prompts look like prose, in any tokenizer.
const char* const kWords[] = {"the",     "river",  "court",    "ledger",
                              "argued",  "quiet",  "north",    "signal",
                              "under",   "before", "merchant", "winter",
                              "library", "and",    "of"};

std::string Prose(std::mt19937_64& rng, size_t chars) {
  std::string text;
  while (text.size() < chars) {
    absl::StrAppend(&text, kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))],
                    rng() % 11 == 0 ? ".\n" : " ");
  }
  text.resize(chars);
  return text;
}

// Workload hands out prompts; thread-safe.
class Workload {
 public:
  Workload() : rng_(absl::GetFlag(FLAGS_seed)) {
    const std::string kind = absl::GetFlag(FLAGS_workload);
    if (kind == "files") {
      const std::string dir = absl::GetFlag(FLAGS_files_dir);
      if (DIR* d = opendir(dir.c_str())) {
        while (dirent* e = readdir(d)) {
          if (e->d_name[0] == '.') continue;
          std::ifstream file(dir + "/" + e->d_name, std::ios::binary);
          std::stringstream text;
          text << file.rdbuf();
          if (!text.str().empty()) documents_.push_back(text.str());
        }
        closedir(d);
      }
    } else {
      for (int i = 0; i < absl::GetFlag(FLAGS_documents); ++i) {
        documents_.push_back(Prose(rng_, absl::GetFlag(FLAGS_document_chars)));
      }
    }
    conversation_ = kind == "conversation";
  }

  bool empty() {
    absl::MutexLock lock(&mu_);
    return documents_.empty();
  }

  std::string Next() {
    absl::MutexLock lock(&mu_);
    const size_t i = next_++ % documents_.size();
    if (!conversation_) {
      return absl::StrCat(documents_[i], "\n\nQuestion ", next_, ": ",
                          Prose(rng_, 80), "?\nAnswer:");
    }
    // A conversation grows by one turn each time it comes round.
    absl::StrAppend(&documents_[i], "\nUser: ", Prose(rng_, 120),
                    "\nAssistant:");
    return documents_[i];
  }

 private:
  absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> documents_ ABSL_GUARDED_BY(mu_);
  bool conversation_ = false;  // Set by the constructor only.
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Sample {
  std::string code;
  double ttft = 0, total = 0;
  std::vector<double> itl;  // Gaps between token messages, per token.
  int prompt_tokens = 0, cached_tokens = 0, generated_tokens = 0;
};

struct Results {
  absl::Mutex mu;
  std::vector<Sample> samples ABSL_GUARDED_BY(mu);
};

Sample RunOne(LongctxClient& client, const std::string& prompt) {
  v1::GenerateRequest request;
  request.set_text(prompt);
  request.mutable_stopping()->set_max_new_tokens(
      absl::GetFlag(FLAGS_max_new_tokens));
  request.mutable_stopping()->set_ignore_eos(true);
  Sample s;
  const absl::Time start = absl::Now();
  absl::Time last = start;
  bool first = true;
  auto result = client.Generate(
      request, absl::Seconds(absl::GetFlag(FLAGS_deadline_seconds)),
      [&](const v1::GenerateResponse& m) {
        if (m.token_ids_size() == 0) return;
        const absl::Time now = absl::Now();
        if (first) {
          s.ttft = absl::ToDoubleSeconds(now - start);
          first = false;
        } else {
          const double gap =
              absl::ToDoubleSeconds(now - last) / m.token_ids_size();
          for (int i = 0; i < m.token_ids_size(); ++i) s.itl.push_back(gap);
        }
        last = now;
      });
  s.total = absl::ToDoubleSeconds(absl::Now() - start);
  s.code = absl::StatusCodeToString(result.status().code());
  if (result.ok()) {
    s.prompt_tokens = result->usage().prompt_tokens();
    s.cached_tokens = result->usage().cached_tokens();
    s.generated_tokens = result->usage().generated_tokens();
  }
  return s;
}

// Sends a one-token request until the gateway serves it or
// --wait_ready_seconds pass; returns the last failure. Only UNAVAILABLE (no
// server yet, or no worker group ready) is worth waiting for.
absl::Status WaitReady(LongctxClient& client) {
  const absl::Time until =
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_wait_ready_seconds));
  v1::GenerateRequest request;
  request.set_text("ready?");
  request.mutable_stopping()->set_max_new_tokens(1);
  request.set_cache_policy(v1::CACHE_POLICY_DISABLED);
  for (;;) {
    absl::Status status =
        client.Generate(request, absl::Seconds(10), nullptr).status();
    if (!absl::IsUnavailable(status) || absl::Now() >= until) return status;
    absl::SleepFor(absl::Milliseconds(200));
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p / 100 * v.size()))];
}

int Run() {
  Workload workload;
  if (workload.empty()) {
    std::fprintf(stderr,
                 "loadgen: no prompts (check --workload / --files_dir)\n");
    return 2;
  }
  absl::StatusOr<LongctxClientOptions> options = ClientOptionsFromFlags();
  if (!options.ok()) {
    std::fprintf(stderr, "loadgen: %s\n",
                 std::string(options.status().message()).c_str());
    return 2;
  }
  LongctxClient client(*options);
  absl::Status ready = WaitReady(client);
  if (!ready.ok()) {
    std::fprintf(stderr, "loadgen: the gateway at %s is not serving: %s\n",
                 options->address.c_str(), ready.ToString().c_str());
    return 1;
  }
  for (int i = 0; i < absl::GetFlag(FLAGS_warmup_requests); ++i) {
    RunOne(client, workload.Next());
  }

  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const int max_requests = absl::GetFlag(FLAGS_requests);
  const double rate = absl::GetFlag(FLAGS_rate);
  const absl::Time start = absl::Now();
  const absl::Time end =
      max_requests > 0
          ? absl::InfiniteFuture()
          : start + absl::Seconds(absl::GetFlag(FLAGS_duration_seconds));
  Results results;
  std::atomic<int> issued{0}, done{0}, in_flight{0};
  // Arrival times (Poisson) are drawn in order under a lock.
  absl::Mutex arrival_mu;
  std::mt19937_64 arrival_rng(absl::GetFlag(FLAGS_seed) + 1);
  absl::Time next_arrival = start;

  auto worker = [&] {
    while (true) {
      const int n = issued.fetch_add(1);
      if ((max_requests > 0 && n >= max_requests) || absl::Now() >= end) return;
      if (rate > 0) {
        absl::Time at;
        {
          absl::MutexLock lock(&arrival_mu);
          std::exponential_distribution<double> gap(rate);
          next_arrival += absl::Seconds(gap(arrival_rng));
          at = next_arrival;
        }
        if (at >= end) return;
        absl::SleepFor(at - absl::Now());
      }
      ++in_flight;
      Sample s = RunOne(client, workload.Next());
      --in_flight;
      ++done;
      absl::MutexLock lock(&results.mu);
      results.samples.push_back(std::move(s));
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < concurrency; ++i) threads.emplace_back(worker);
  std::atomic<bool> finished{false};
  std::thread progress([&] {
    while (!finished.load()) {
      absl::SleepFor(absl::Seconds(1));
      std::fprintf(stderr, "\r%6.0fs  done %d  in flight %d   ",
                   absl::ToDoubleSeconds(absl::Now() - start), done.load(),
                   in_flight.load());
      std::fflush(stderr);
    }
  });
  for (auto& t : threads) t.join();
  finished = true;
  progress.join();
  std::fprintf(stderr, "\n");
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);

  absl::MutexLock lock(&results.mu);
  std::map<std::string, int> by_code;
  std::vector<double> ttft, itl, total;
  int64_t prompt = 0, cached = 0, generated = 0;
  for (const Sample& s : results.samples) {
    ++by_code[s.code];
    if (s.code != "OK") continue;
    ttft.push_back(s.ttft);
    total.push_back(s.total);
    itl.insert(itl.end(), s.itl.begin(), s.itl.end());
    prompt += s.prompt_tokens;
    cached += s.cached_tokens;
    generated += s.generated_tokens;
  }
  const double cached_ratio =
      prompt > 0 ? static_cast<double>(cached) / prompt : 0;
  if (absl::GetFlag(FLAGS_json)) {
    std::string codes;
    for (const auto& [code, count] : by_code) {
      absl::StrAppend(&codes, codes.empty() ? "" : ", ", "\"", code,
                      "\": ", count);
    }
    auto pct = [](const std::vector<double>& v) {
      return absl::StrFormat("{\"p50\": %.6f, \"p90\": %.6f, \"p99\": %.6f}",
                             Percentile(v, 50), Percentile(v, 90),
                             Percentile(v, 99));
    };
    std::printf(
        "{\"requests\": {%s}, \"seconds\": %.3f, \"ttft_seconds\": %s, "
        "\"itl_seconds\": %s, \"e2e_seconds\": %s, "
        "\"input_tokens_per_second\": %.1f, "
        "\"output_tokens_per_second\": %.1f, \"cached_token_ratio\": %.4f}\n",
        codes.c_str(), elapsed, pct(ttft).c_str(), pct(itl).c_str(),
        pct(total).c_str(), prompt / elapsed, generated / elapsed,
        cached_ratio);
    return 0;
  }
  std::printf("requests:");
  for (const auto& [code, count] : by_code)
    std::printf(" %s=%d", code.c_str(), count);
  std::printf("  in %.1f s\n\n", elapsed);
  std::printf("| metric | p50 | p90 | p99 |\n|---|---|---|---|\n");
  for (const auto& [name, v] :
       std::vector<std::pair<const char*, std::vector<double>*>>{
           {"time to first token (s)", &ttft},
           {"inter-token latency (s)", &itl},
           {"end-to-end latency (s)", &total}}) {
    std::printf("| %s | %.4f | %.4f | %.4f |\n", name, Percentile(*v, 50),
                Percentile(*v, 90), Percentile(*v, 99));
  }
  std::printf("\ntokens/s in %.1f, out %.1f; cached-token ratio %.3f\n",
              prompt / elapsed, generated / elapsed, cached_ratio);
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return longctx::Run();
}
