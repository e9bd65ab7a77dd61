#include "services/rendezvous/testing/in_process_rendezvous.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace longctx::testing {

std::unique_ptr<InProcessRendezvous> InProcessRendezvous::Start() {
  std::unique_ptr<InProcessRendezvous> rendezvous(new InProcessRendezvous);
  GrpcServerOptions options;
  options.listen = {"127.0.0.1", 0};
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start(options, {&rendezvous->service_});
  if (!server.ok()) {
    std::fprintf(stderr, "InProcessRendezvous: %s\n",
                 server.status().ToString().c_str());
    std::abort();
  }
  rendezvous->server_ = *std::move(server);
  rendezvous->address_ =
      absl::StrCat("127.0.0.1:", rendezvous->server_->port());
  return rendezvous;
}

}  // namespace longctx::testing
