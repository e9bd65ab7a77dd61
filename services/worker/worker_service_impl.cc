#include "services/worker/worker_service_impl.h"

#include <utility>

namespace longctx {

WorkerServiceImpl::WorkerServiceImpl(const WorkerIdentity& identity,
                                     std::string fingerprint_hex,
                                     int block_size)
    : identity_(identity),
      fingerprint_hex_(std::move(fingerprint_hex)),
      block_size_(block_size) {}

grpc::ServerUnaryReactor* WorkerServiceImpl::GetStatus(
    grpc::CallbackServerContext* context,
    const worker::v1::GetStatusRequest* /*request*/,
    worker::v1::WorkerStatus* response) {
  response->set_group_id(identity_.group_id);
  response->set_rank(identity_.rank);
  response->set_group_size(identity_.group_size);
  response->set_ready(ready_.load());
  response->set_model_fingerprint(fingerprint_hex_);
  response->set_block_size(block_size_);
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace longctx
