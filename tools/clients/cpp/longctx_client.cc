#include "tools/clients/cpp/longctx_client.h"

#include "grpcpp/grpcpp.h"
#include "services/common/status_util.h"

namespace longctx {

namespace {

LongctxClientOptions PlaintextAt(const std::string& address) {
  LongctxClientOptions options;
  options.address = address;
  return options;
}

}  // namespace

LongctxClient::LongctxClient(const std::string& address)
    : LongctxClient(PlaintextAt(address)) {}

LongctxClient::LongctxClient(const LongctxClientOptions& options)
    : stub_(v1::LongContext::NewStub(
          options.security.NewChannel(options.address))),
      token_(options.token) {}

void LongctxClient::Authorize(grpc::ClientContext* context) const {
  if (!token_.empty())
    context->AddMetadata("authorization", "Bearer " + token_);
}

absl::StatusOr<v1::GenerateResponse> LongctxClient::Generate(
    const v1::GenerateRequest& request, absl::Duration deadline,
    const std::function<void(const v1::GenerateResponse&)>& on_message) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  Authorize(&context);
  auto reader = stub_->Generate(&context, request);
  v1::GenerateResponse message, last;
  while (reader->Read(&message)) {
    if (on_message) on_message(message);
    last = message;
  }
  absl::Status status = FromGrpcStatus(reader->Finish());
  if (!status.ok()) return status;
  return last;
}

absl::StatusOr<v1::TokenizeResponse> LongctxClient::Tokenize(
    const v1::TokenizeRequest& request) {
  grpc::ClientContext context;
  Authorize(&context);
  v1::TokenizeResponse response;
  absl::Status status =
      FromGrpcStatus(stub_->Tokenize(&context, request, &response));
  if (!status.ok()) return status;
  return response;
}

absl::StatusOr<v1::ModelInfo> LongctxClient::GetModelInfo() {
  grpc::ClientContext context;
  Authorize(&context);
  v1::ModelInfo info;
  absl::Status status = FromGrpcStatus(
      stub_->GetModelInfo(&context, v1::GetModelInfoRequest(), &info));
  if (!status.ok()) return status;
  return info;
}

}  // namespace longctx
