// InProcessRendezvous: the rendezvous service on a loopback port inside the
// test process, where the ranks of a test's groups meet.
#ifndef LONGCTX_SERVICES_RENDEZVOUS_TESTING_IN_PROCESS_RENDEZVOUS_H_
#define LONGCTX_SERVICES_RENDEZVOUS_TESTING_IN_PROCESS_RENDEZVOUS_H_

#include <memory>
#include <string>

#include "services/common/grpc_server.h"
#include "services/rendezvous/rendezvous_service_impl.h"

namespace longctx::testing {

// InProcessRendezvous serves a RendezvousServiceImpl without TLS on
// 127.0.0.1 at a free port until it is destroyed. Thread-safe.
class InProcessRendezvous {
 public:
  // Start aborts, with the reason, if the server cannot start.
  static std::unique_ptr<InProcessRendezvous> Start();

  // "127.0.0.1:port", as RendezvousStore and the workers' flags take it.
  const std::string& address() const { return address_; }
  int port() const { return server_->port(); }

 private:
  InProcessRendezvous() = default;

  RendezvousServiceImpl service_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
};

}  // namespace longctx::testing

#endif  // LONGCTX_SERVICES_RENDEZVOUS_TESTING_IN_PROCESS_RENDEZVOUS_H_
