// The Prometheus side of every longctx process: a registry that components add
// their metrics to, served on /metrics by prometheus-cpp's exposer, with the
// metrics every process has (build info and process CPU, memory, file
// descriptors, start time).
#ifndef LONGCTX_SERVICES_COMMON_METRICS_SERVER_H_
#define LONGCTX_SERVICES_COMMON_METRICS_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"
#include "services/common/net_address.h"

namespace longctx {

// MetricsServer owns the process's metric registry and its HTTP endpoint.
// Thread-safe: registry() may be used from any thread.
class MetricsServer {
 public:
  // Start serves /metrics on `address` (port 0 picks a free port). `service`
  // names the process in longctx_build_info{service=...}. Returns
  // FAILED_PRECONDITION if the address is in use, with a message naming the
  // --metrics_address flag.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const HostPort& address, absl::string_view service);

  ~MetricsServer();

  // The registry components add their metric families to.
  prometheus::Registry& registry() { return *registry_; }

  // The port /metrics is served on (useful with port 0).
  int port() const { return port_; }

  // AddCollectable serves `collectable`'s metrics on /metrics too, read at
  // each scrape (for values that are measured rather than counted, such as a
  // GPU's memory in use). Kept for the server's lifetime.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

 private:
  MetricsServer() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> process_collector_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_METRICS_SERVER_H_
