#include "tests/testing/generate.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace longctx::testing {

GenerateResult Generate(v1::LongContext::Stub& stub,
                        const v1::GenerateRequest& request,
                        absl::Duration deadline, grpc::ClientContext* context) {
  grpc::ClientContext own_context;
  if (context == nullptr) context = &own_context;
  context->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  const absl::Time start = absl::Now();
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader =
      stub.Generate(context, request);
  GenerateResult result;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    ++result.messages;
    result.tokens.insert(result.tokens.end(), response.token_ids().begin(),
                         response.token_ids().end());
    result.logprobs.insert(result.logprobs.end(), response.logprobs().begin(),
                           response.logprobs().end());
    result.text += response.text();
    result.last = response;
  }
  result.status = reader->Finish();
  result.elapsed = absl::Now() - start;
  return result;
}

GenerateResult Generate(const std::string& address,
                        const v1::GenerateRequest& request,
                        absl::Duration deadline) {
  std::unique_ptr<v1::LongContext::Stub> stub = v1::LongContext::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  return Generate(*stub, request, deadline);
}

grpc::Status WorkerGenerate(const std::string& address,
                            const worker::v1::GenerateRequest& request,
                            absl::Duration deadline) {
  std::unique_ptr<worker::v1::Worker::Stub> stub = worker::v1::Worker::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  std::unique_ptr<grpc::ClientReader<worker::v1::GenerateResponse>> reader =
      stub->Generate(&context, request);
  worker::v1::GenerateResponse response;
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

absl::StatusOr<worker::v1::WorkerStatus> WorkerStatus(
    const std::string& address, absl::Duration deadline) {
  std::unique_ptr<worker::v1::Worker::Stub> stub = worker::v1::Worker::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  worker::v1::GetStatusRequest request;
  worker::v1::WorkerStatus status;
  grpc::Status rpc = stub->GetStatus(&context, request, &status);
  if (!rpc.ok()) {
    return absl::UnavailableError(
        absl::StrCat("GetStatus on ", address, ": ", rpc.error_message()));
  }
  return status;
}

}  // namespace longctx::testing
