#include "services/gateway/openai/http_server.h"

#include <httplib.h>

#include <chrono>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "proto/grpc/health/v1/health.grpc.pb.h"
#include "proto/longctx.grpc.pb.h"
#include "services/common/status_util.h"
#include "services/gateway/openai/openai_api.h"

namespace longctx::openai {
namespace {

using json = nlohmann::json;

void SendError(const absl::Status& status, httplib::Response& res) {
  const ApiError error = ErrorFor(status);
  res.status = error.http_status;
  res.set_content(error.body.dump(), "application/json");
}

// A gRPC context carrying the HTTP request's credentials and deadline.
std::unique_ptr<grpc::ClientContext> CallContext(const httplib::Request& req,
                                                 absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  const std::string authorization = req.get_header_value("Authorization");
  if (!authorization.empty()) {
    context->AddMetadata("authorization", authorization);
  }
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoSeconds(timeout));
  return context;
}

absl::StatusOr<v1::ModelInfo> ModelInfo(v1::LongContext::Stub& stub,
                                        const httplib::Request& req) {
  std::unique_ptr<grpc::ClientContext> context =
      CallContext(req, absl::Seconds(10));
  v1::ModelInfo info;
  grpc::Status status =
      stub.GetModelInfo(context.get(), v1::GetModelInfoRequest(), &info);
  if (!status.ok()) return FromGrpcStatus(status);
  return info;
}

// The served model's name for the responses, asked of the gateway once (by
// a caller whose Generate was just accepted, so with valid credentials) and
// kept: it does not change while the process runs.
class ModelName {
 public:
  absl::StatusOr<std::string> Get(v1::LongContext::Stub& stub,
                                  const httplib::Request& req) {
    {
      absl::MutexLock lock(&mu_);
      if (name_.has_value()) return *name_;
    }
    absl::StatusOr<v1::ModelInfo> info = ModelInfo(stub, req);
    if (!info.ok()) return info.status();
    absl::MutexLock lock(&mu_);
    name_ = info->name();
    return *name_;
  }

 private:
  absl::Mutex mu_;
  std::optional<std::string> name_ ABSL_GUARDED_BY(mu_);
};

// One Generate call relayed to an HTTP response.
class Relay {
 public:
  Relay(std::shared_ptr<v1::LongContext::Stub> stub, ApiRequest request,
        std::unique_ptr<grpc::ClientContext> context)
      : stub_(std::move(stub)),
        request_(std::move(request)),
        context_(std::move(context)),
        reader_(stub_->Generate(context_.get(), request_.generate)) {}

  // Reads the first message; the status when the call failed before it.
  absl::Status Begin() {
    if (reader_->Read(&first_)) return absl::OkStatus();
    return FromGrpcStatus(reader_->Finish());
  }

  ResponseInfo Info(const std::string& model) {
    const bool chat = request_.endpoint == Endpoint::kChatCompletions;
    return ResponseInfo{
        absl::StrCat(chat ? "chatcmpl-" : "cmpl-", first_.request_id()), model,
        absl::ToUnixSeconds(absl::Now())};
  }

  // Whole: every message, then the status.
  absl::Status ReadAll(std::vector<v1::GenerateResponse>* messages) {
    messages->push_back(first_);
    v1::GenerateResponse message;
    while (reader_->Read(&message)) messages->push_back(message);
    return FromGrpcStatus(reader_->Finish());
  }

  // Streamed: writes the events of each message as it comes; false when the
  // client went away (the call is cancelled).
  bool Stream(const ResponseInfo& info, httplib::DataSink& sink) {
    const auto write = [&](const std::string& events) {
      return events.empty() || sink.write(events.data(), events.size());
    };
    if (!write(ChunkEvents(request_, info, first_, /*first=*/true))) {
      return Cancel();
    }
    v1::GenerateResponse message;
    while (reader_->Read(&message)) {
      if (!write(ChunkEvents(request_, info, message, /*first=*/false))) {
        return Cancel();
      }
    }
    const absl::Status status = FromGrpcStatus(reader_->Finish());
    if (!status.ok()) {
      // Headers are gone: the error travels as an event, as OpenAI's do.
      if (!write(
              absl::StrCat("data: ", ErrorFor(status).body.dump(), "\n\n"))) {
        return false;
      }
    }
    write(std::string(kDoneEvent));
    sink.done();
    return true;
  }

 private:
  bool Cancel() {
    context_->TryCancel();
    v1::GenerateResponse ignored;
    while (reader_->Read(&ignored)) {
    }
    reader_->Finish();
    return false;
  }

  std::shared_ptr<v1::LongContext::Stub> stub_;
  ApiRequest request_;
  std::unique_ptr<grpc::ClientContext> context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader_;
  v1::GenerateResponse first_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<OpenAiHttpServer>> OpenAiHttpServer::Start(
    const HttpServerOptions& options, std::shared_ptr<grpc::Channel> channel) {
  std::unique_ptr<OpenAiHttpServer> server(new OpenAiHttpServer());
  if (!options.tls_cert_file.empty()) {
    auto tls = std::make_unique<httplib::SSLServer>(
        options.tls_cert_file.c_str(), options.tls_key_file.c_str(),
        options.tls_client_ca_file.empty()
            ? nullptr
            : options.tls_client_ca_file.c_str());
    if (!tls->is_valid()) {
      return absl::FailedPreconditionError(
          "--http_address: cannot serve HTTPS with --tls_cert, --tls_key "
          "(and --tls_client_ca)");
    }
    server->server_ = std::move(tls);
    server->tls_ = true;
  } else {
    server->server_ = std::make_unique<httplib::Server>();
  }
  httplib::Server& http = *server->server_;
  auto stub =
      std::shared_ptr<v1::LongContext::Stub>(v1::LongContext::NewStub(channel));
  const int threads = options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_read_timeout(30, 0);
  http.set_write_timeout(
      static_cast<time_t>(absl::ToInt64Seconds(options.write_timeout)), 0);
  // Errors httplib answers itself (404, 413, ...) get the OpenAI shape too.
  http.set_error_handler(
      [](const httplib::Request& req, httplib::Response& res) {
        if (!res.body.empty()) return;
        const absl::Status status =
            res.status == 404 ? absl::NotFoundError(absl::StrCat(
                                    "no route ", req.method, " ", req.path))
            : res.status == 413
                ? absl::InvalidArgumentError("the request body is too large")
                : absl::InvalidArgumentError(absl::StrCat("HTTP ", res.status));
        const int code = res.status;
        SendError(status, res);
        res.status = code;
      });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        SendError(absl::InternalError("internal error"), res);
      });

  auto health = std::shared_ptr<grpc::health::v1::Health::Stub>(
      grpc::health::v1::Health::NewStub(channel));
  http.Get(
      "/health", [health](const httplib::Request&, httplib::Response& res) {
        // The gateway's gRPC health: SERVING while a worker group is ready (no
        // credentials needed, as for gRPC health checks).
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(5));
        grpc::health::v1::HealthCheckResponse response;
        const grpc::Status status = health->Check(
            &context, grpc::health::v1::HealthCheckRequest(), &response);
        const bool up =
            status.ok() &&
            response.status() == grpc::health::v1::HealthCheckResponse::SERVING;
        res.status = up ? 200 : 503;
        res.set_content(json({{"status", up ? "ok" : "unavailable"}}).dump(),
                        "application/json");
      });
  http.Get("/v1/models", [stub](const httplib::Request& req,
                                httplib::Response& res) {
    absl::StatusOr<v1::ModelInfo> info = ModelInfo(*stub, req);
    if (!info.ok()) return SendError(info.status(), res);
    const json model = {{"id", info->name()},
                        {"object", "model"},
                        {"created", 0},
                        {"owned_by", "longctx"},
                        {"max_model_len", info->max_prompt_tokens()}};
    res.set_content(json({{"object", "list"}, {"data", {model}}}).dump(),
                    "application/json");
  });
  auto model_name = std::make_shared<ModelName>();
  const auto generate = [stub, options, model_name](Endpoint endpoint) {
    return [stub, options, model_name, endpoint](const httplib::Request& req,
                                                 httplib::Response& res) {
      absl::StatusOr<ApiRequest> request =
          ParseRequest(endpoint, req.body, options.max_body_bytes);
      if (!request.ok()) return SendError(request.status(), res);
      const bool stream = request->stream;
      const ApiRequest shape = *request;  // What the response looks like.
      auto relay = std::make_shared<Relay>(
          stub, *std::move(request), CallContext(req, options.request_timeout));
      absl::Status begun = relay->Begin();
      if (!begun.ok()) return SendError(begun, res);
      // The request's "model" was checked by the gateway, as for gRPC.
      absl::StatusOr<std::string> name = model_name->Get(*stub, req);
      if (!name.ok()) return SendError(name.status(), res);
      const ResponseInfo response_info = relay->Info(*name);
      if (!stream) {
        std::vector<v1::GenerateResponse> messages;
        absl::Status done = relay->ReadAll(&messages);
        if (!done.ok()) return SendError(done, res);
        res.set_content(
            CompletionResponse(shape, response_info, messages).dump(),
            "application/json");
        return;
      }
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream",
          [relay, response_info](size_t, httplib::DataSink& sink) {
            relay->Stream(response_info, sink);
            return false;  // Everything is written (or the client left).
          });
    };
  };
  http.Post("/v1/completions", generate(Endpoint::kCompletions));
  http.Post("/v1/chat/completions", generate(Endpoint::kChatCompletions));

  const std::string host =
      options.listen.host.empty() ? "127.0.0.1" : options.listen.host;
  if (options.listen.port == 0) {
    server->port_ = http.bind_to_any_port(host);
  } else if (http.bind_to_port(host, options.listen.port)) {
    server->port_ = options.listen.port;
  }
  if (server->port_ <= 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--http_address=", host, ":", options.listen.port,
                     ": cannot listen (port in use?)"));
  }
  server->thread_ = std::thread([&http] { http.listen_after_bind(); });
  return server;
}

OpenAiHttpServer::~OpenAiHttpServer() {
  if (server_ != nullptr) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace longctx::openai
