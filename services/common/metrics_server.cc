#include "services/common/metrics_server.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/gauge.h"
#include "prometheus/metric_family.h"
#include "services/common/version.h"

namespace longctx {
namespace {

// ProcessCollector reports the standard process_* metrics from /proc/self at
// scrape time, under the names Prometheus' client libraries use.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> families;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));

    // /proc/self/stat fields after the parenthesised command name: state is
    // field 3; utime 14, stime 15, num_threads 20, starttime 22, vsize 23,
    // rss 24.
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)),
                     std::istreambuf_iterator<char>());
    size_t close = stat.rfind(')');
    if (close != std::string::npos) {
      std::istringstream fields(stat.substr(close + 2));
      std::vector<std::string> f;
      std::string token;
      while (fields >> token) f.push_back(token);
      auto field = [&](int number) {  // 1-based number in the full stat line.
        size_t index = static_cast<size_t>(number - 3);
        return index < f.size() ? std::stod(f[index]) : 0.0;
      };
      Add(&families, "process_cpu_seconds_total",
          "Total user and system CPU time spent in seconds.",
          prometheus::MetricType::Counter, (field(14) + field(15)) / ticks);
      Add(&families, "process_virtual_memory_bytes",
          "Virtual memory size in bytes.", prometheus::MetricType::Gauge,
          field(23));
      Add(&families, "process_resident_memory_bytes",
          "Resident memory size in bytes.", prometheus::MetricType::Gauge,
          field(24) * page);
      Add(&families, "process_threads", "Number of OS threads in the process.",
          prometheus::MetricType::Gauge, field(20));
      Add(&families, "process_start_time_seconds",
          "Start time of the process since unix epoch in seconds.",
          prometheus::MetricType::Gauge, BootTime() + field(22) / ticks);
    }
    Add(&families, "process_open_fds", "Number of open file descriptors.",
        prometheus::MetricType::Gauge, CountOpenFds());
    rlimit limit{};
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
      Add(&families, "process_max_fds",
          "Maximum number of open file descriptors.",
          prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur));
    }
    return families;
  }

 private:
  static void Add(std::vector<prometheus::MetricFamily>* families,
                  const std::string& name, const std::string& help,
                  prometheus::MetricType type, double value) {
    prometheus::MetricFamily family;
    family.name = name;
    family.help = help;
    family.type = type;
    prometheus::ClientMetric metric;
    if (type == prometheus::MetricType::Counter) {
      metric.counter.value = value;
    } else {
      metric.gauge.value = value;
    }
    family.metric.push_back(metric);
    families->push_back(std::move(family));
  }

  static double BootTime() {
    std::ifstream file("/proc/stat");
    std::string key;
    while (file >> key) {
      if (key == "btime") {
        double value = 0;
        file >> value;
        return value;
      }
    }
    return 0;
  }

  static double CountOpenFds() {
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return 0;
    double count = 0;
    while (dirent* entry = readdir(dir)) {
      if (entry->d_name[0] != '.') ++count;
    }
    closedir(dir);
    return count - 1;  // The descriptor opendir itself holds.
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const HostPort& address, absl::string_view service) {
  absl::Status free = CheckPortFree(address, "--metrics_address");
  if (!free.ok()) return free;
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->registry_ = std::make_shared<prometheus::Registry>();
  prometheus::BuildGauge()
      .Name("longctx_build_info")
      .Help("Build information of this longctx process; the value is always 1.")
      .Register(*server->registry_)
      .Add({{"service", std::string(service)}, {"version", kLongctxVersion}})
      .Set(1);
  server->process_collector_ = std::make_shared<ProcessCollector>();
  try {
    // prometheus-cpp's exposer (civetweb) reports bind failures by throwing.
    server->exposer_ = std::make_unique<prometheus::Exposer>(address.ToString(),
                                                             /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("--metrics_address ", address.ToString(),
                     " cannot be served: ", e.what()));
  }
  server->exposer_->RegisterCollectable(server->registry_);
  server->exposer_->RegisterCollectable(server->process_collector_);
  std::vector<int> ports = server->exposer_->GetListeningPorts();
  server->port_ = ports.empty() ? address.port : ports.front();
  return server;
}

MetricsServer::~MetricsServer() = default;

void MetricsServer::AddCollectable(
    std::shared_ptr<prometheus::Collectable> collectable) {
  exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

}  // namespace longctx
