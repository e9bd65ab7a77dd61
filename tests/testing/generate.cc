#include "tests/testing/generate.h"

#include <memory>

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

}  // namespace longctx::testing
