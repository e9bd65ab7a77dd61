// Reactors of gRPC's callback API that end a streaming call at once with a
// status, before anything is read or written: how a service refuses a call
// (unauthenticated, malformed, over a limit) that it will not serve.
#ifndef LONGCTX_SERVICES_COMMON_REFUSED_REACTORS_H_
#define LONGCTX_SERVICES_COMMON_REFUSED_REACTORS_H_

#include "grpcpp/support/server_callback.h"
#include "grpcpp/support/status.h"

namespace longctx {

// RefusedWriteReactor finishes a server-streaming call with `status`.
// Allocate with new; it deletes itself when gRPC is done with it.
template <typename Response>
class RefusedWriteReactor : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) {
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

// RefusedReadReactor finishes a client-streaming call with `status` without
// reading a message.
template <typename Request>
class RefusedReadReactor : public grpc::ServerReadReactor<Request> {
 public:
  explicit RefusedReadReactor(const grpc::Status& status) {
    this->Finish(status);
  }
  void OnDone() override { delete this; }
};

}  // namespace longctx

#endif  // LONGCTX_SERVICES_COMMON_REFUSED_REACTORS_H_
