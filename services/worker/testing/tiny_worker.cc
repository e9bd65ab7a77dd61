#include "services/worker/testing/tiny_worker.h"

#include <cstdio>
#include <cstdlib>

#include "services/common/testing/temp_dir.h"
#include "tools/make_tiny_model/tiny_model.h"

namespace longctx::testing {

std::string NewTinyModelDir(absl::string_view prefix) {
  const std::string dir = NewTempDir(prefix);
  absl::StatusOr<TinyModelOptions> preset = TinyModelPreset("tiny");
  absl::Status written =
      preset.ok() ? WriteTinyModel(*preset, dir) : preset.status();
  if (!written.ok()) {
    std::fprintf(stderr, "NewTinyModelDir: %s\n", written.ToString().c_str());
    std::abort();
  }
  return dir;
}

WorkerServerOptions TinyWorkerOptions(const std::string& model_dir) {
  WorkerServerOptions o;
  o.grpc.listen = {"127.0.0.1", 0};
  o.metrics_address = {"127.0.0.1", 0};
  o.model_dir = model_dir;
  o.device.block_size = 16;
  o.device.kv_cache_bytes = size_t{64} << 20;
  o.device.kv_cache_prefault = false;
  return o;
}

}  // namespace longctx::testing
