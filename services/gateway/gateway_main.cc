// gateway: the public endpoint of longctx (proto/longctx.proto). Validates and
// tokenizes requests and drives the worker groups.
#include <string>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "services/common/internal_auth.h"
#include "services/common/internal_tls_flags.h"
#include "services/common/internal_token_flags.h"
#include "services/common/net_address.h"
#include "services/common/server_main.h"
#include "services/common/server_tls_flags.h"
#include "services/gateway/gateway_server.h"

ABSL_FLAG(std::string, listen_address, "0.0.0.0:50051",
          "host:port of the public gRPC endpoint.");
ABSL_FLAG(std::string, internal_listen_address, "127.0.0.1:50053",
          "host:port of the internal gRPC endpoint, where the ranks of worker "
          "groups meet (Rendezvous); never on the public one. Loopback by "
          "default: when ranks run on other machines, listen on a private "
          "address and set --internal_token_file or internal TLS "
          "(--internal_tls_cert, --internal_tls_key and --internal_tls_ca, "
          "which then requires the ranks' client certificates).");
ABSL_FLAG(int64_t, rendezvous_max_bytes, 64 << 20,
          "Most bytes of keys and values the Rendezvous store holds (each "
          "group's formation writes a few KiB); more are RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, rendezvous_max_waiters, 256,
          "Most Rendezvous Gets waiting at once (one per forming rank); more "
          "are RESOURCE_EXHAUSTED.");
ABSL_FLAG(std::string, metrics_address, "0.0.0.0:9451",
          "host:port of the Prometheus /metrics endpoint.");
ABSL_FLAG(std::string, model, "",
          "Model folder (config.json and the tokenizer; weights are not read). "
          "Required; must be the workers' model.");
ABSL_FLAG(
    std::string, model_name, "",
    "Name of the model in GetModelInfo and GenerateRequest.model; default: "
    "the model folder's name.");
ABSL_FLAG(std::string, workers, "",
          "Comma-separated host:port of every worker rank, group after group "
          "(ranks 0..P-1 of group 0, then group 1, ...). Required.");
ABSL_FLAG(int, group_size, 1, "Ranks per worker group (P).");
ABSL_FLAG(std::string, memory_store, "",
          "Comma-separated host:port list of memory_store shards; empty runs "
          "without the prefix store.");
ABSL_FLAG(int, store_timeout_ms, 200,
          "Deadline of the memory_store lookup of a prompt's stored prefix "
          "before dispatch; a shard that does not answer in time reads as a "
          "miss.");
ABSL_FLAG(int, prefix_route_entries, 65536,
          "Block keys the gateway remembers to send a prompt to the worker "
          "group that computed its prefix; 0 routes by load alone.");
ABSL_FLAG(int, prefix_affinity_slack, 4,
          "A request goes to the group holding its prefix when that group has "
          "at most this many more requests in flight than the least loaded "
          "one.");
ABSL_FLAG(int, max_prompt_tokens, 131072,
          "Longest prompt accepted, in tokens.");
ABSL_FLAG(int, max_new_tokens, 4096, "Most new tokens a request may ask for.");
ABSL_FLAG(int, default_max_new_tokens, 256,
          "New tokens for a request that does not set max_new_tokens.");
ABSL_FLAG(int, max_concurrent_requests, 256,
          "Most Generate streams and Tokenize calls at once; more get "
          "RESOURCE_EXHAUSTED.");
ABSL_FLAG(int, max_concurrent_requests_per_tenant, 64,
          "Most Generate streams and Tokenize calls at once of one tenant of "
          "--auth_tokens_file, so one client cannot take every slot; 0: only "
          "--max_concurrent_requests. Without a tokens file every client is "
          "one tenant, bounded by --max_concurrent_requests alone.");
ABSL_FLAG(absl::Duration, stream_write_timeout, absl::Seconds(60),
          "A Generate stream whose client takes no message for this long "
          "(e.g. `30s`) is cancelled, freeing its slot and its worker "
          "sequence: a client that stops reading cannot hold them forever.");
ABSL_FLAG(int, max_chat_messages, 4096,
          "Most turns of a chat prompt (GenerateRequest.messages).");
ABSL_FLAG(std::string, http_address, "",
          "Where the OpenAI-compatible HTTP API listens (/v1/completions, "
          "/v1/chat/completions, /v1/models, /health), e.g. 127.0.0.1:8000; "
          "empty: off. Same bearer tokens as gRPC, and HTTPS with the same "
          "certificate when --tls_cert is set (plaintext otherwise).");
ABSL_FLAG(int, http_threads, 64,
          "Connections the HTTP API serves at once (streams included).");
ABSL_FLAG(absl::Duration, http_request_timeout, absl::Minutes(30),
          "Deadline of each generation an HTTP request starts.");
ABSL_FLAG(bool, refuse_special_tokens_in_messages, false,
          "Refuse chat messages whose content or name holds a special token's "
          "text (e.g. \"<|im_end|>\"), which would otherwise become that "
          "token and let a user write turns of other roles. Text prompts are "
          "not checked.");
ABSL_FLAG(int, max_text_bytes, 0,
          "Longest text accepted by Tokenize and Generate, in bytes; 0: 8 per "
          "--max_prompt_tokens (1 MiB at the default).");
ABSL_FLAG(int, max_message_bytes, 0,
          "Largest gRPC request message accepted, in bytes, after "
          "decompression (a request with its whole text or token ids); "
          "larger ones get RESOURCE_EXHAUSTED from gRPC before they are "
          "parsed. 0: follows --max_prompt_tokens and --max_text_bytes (the "
          "larger of the text and 5 bytes per prompt token, plus 64 KiB). "
          "When set, must be above --max_text_bytes.");
ABSL_FLAG(int, grace_period_seconds, 10,
          "On SIGTERM/SIGINT, seconds calls in flight may take to finish.");
ABSL_FLAG(std::string, auth_tokens_file, "",
          "File of the bearer tokens clients must send (\"authorization: "
          "Bearer <token>\") on every LongContext call: one per line, '#' "
          "starts a comment; re-read when it changes. Empty: no "
          "authentication.");
ABSL_FLAG(std::string, log_level, "info", "debug, info, warning or error.");

namespace {

// OptionsFromFlags checks the flags (errors name them) and turns them into
// the server's options.
absl::StatusOr<longctx::GatewayServerOptions> OptionsFromFlags() {
  longctx::GatewayServerOptions o;
  auto addresses =
      longctx::ParseServerAddresses(absl::GetFlag(FLAGS_listen_address),
                                    absl::GetFlag(FLAGS_metrics_address));
  if (!addresses.ok()) return addresses.status();
  o.metrics_address = addresses->metrics;
  auto workers =
      longctx::ParseHostPortList(absl::GetFlag(FLAGS_workers), "workers");
  if (!workers.ok()) return workers.status();
  o.workers = *std::move(workers);
  auto stores = longctx::ParseHostPortList(absl::GetFlag(FLAGS_memory_store),
                                           "memory_store");
  if (!stores.ok()) return stores.status();
  o.memory_stores = *std::move(stores);
  o.group_size = absl::GetFlag(FLAGS_group_size);

  longctx::GatewayLimits& limits = o.limits;
  limits.max_prompt_tokens = absl::GetFlag(FLAGS_max_prompt_tokens);
  limits.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  limits.default_max_new_tokens = absl::GetFlag(FLAGS_default_max_new_tokens);
  limits.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  if (limits.max_text_bytes == 0 && limits.max_prompt_tokens >= 1) {
    limits.max_text_bytes =
        longctx::DefaultMaxTextBytes(limits.max_prompt_tokens);
  }
  limits.max_chat_messages = absl::GetFlag(FLAGS_max_chat_messages);
  limits.refuse_special_tokens_in_messages =
      absl::GetFlag(FLAGS_refuse_special_tokens_in_messages);
  if (limits.max_chat_messages < 1) {
    return absl::InvalidArgumentError("--max_chat_messages must be >= 1");
  }
  limits.max_concurrent_requests = absl::GetFlag(FLAGS_max_concurrent_requests);
  if (limits.max_concurrent_requests < 1) {
    return absl::InvalidArgumentError("--max_concurrent_requests must be >= 1");
  }
  limits.stream_write_timeout = absl::GetFlag(FLAGS_stream_write_timeout);
  if (limits.stream_write_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--stream_write_timeout must be positive");
  }
  limits.max_concurrent_requests_per_tenant =
      absl::GetFlag(FLAGS_max_concurrent_requests_per_tenant);
  if (limits.max_concurrent_requests_per_tenant < 0) {
    return absl::InvalidArgumentError(
        "--max_concurrent_requests_per_tenant must be >= 0");
  }
  if (limits.max_prompt_tokens < 1 || limits.max_new_tokens < 1 ||
      limits.default_max_new_tokens < 1 || limits.max_text_bytes < 1) {
    return absl::InvalidArgumentError(
        "--max_prompt_tokens, --max_new_tokens, --default_max_new_tokens and "
        "--max_text_bytes must be >= 1");
  }
  const int store_timeout_ms = absl::GetFlag(FLAGS_store_timeout_ms);
  o.prefix_route_entries = absl::GetFlag(FLAGS_prefix_route_entries);
  o.prefix_affinity_slack = absl::GetFlag(FLAGS_prefix_affinity_slack);
  if (store_timeout_ms < 1 || o.prefix_route_entries < 0 ||
      o.prefix_affinity_slack < 0) {
    return absl::InvalidArgumentError(
        "--store_timeout_ms must be >= 1, and --prefix_route_entries and "
        "--prefix_affinity_slack >= 0");
  }
  o.store_timeout = absl::Milliseconds(store_timeout_ms);
  int max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message_bytes == 0) {
    max_message_bytes = longctx::ReceiveLimitBytes(limits);
  } else if (max_message_bytes <= limits.max_text_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_message_bytes=", max_message_bytes,
        " must be above --max_text_bytes=", limits.max_text_bytes,
        ": a request carries its text and other fields in one message"));
  }
  o.grpc.listen = addresses->listen;
  o.grpc.max_receive_message_bytes = max_message_bytes;
  if (!absl::GetFlag(FLAGS_http_address).empty()) {
    auto http_listen = longctx::ParseHostPort(absl::GetFlag(FLAGS_http_address),
                                              "http_address");
    if (!http_listen.ok()) return http_listen.status();
    longctx::openai::HttpServerOptions http;
    http.listen = *http_listen;
    http.threads = absl::GetFlag(FLAGS_http_threads);
    http.request_timeout = absl::GetFlag(FLAGS_http_request_timeout);
    http.write_timeout = limits.stream_write_timeout;
    // A request body is the JSON of what a gRPC message carries.
    http.max_body_bytes = static_cast<size_t>(max_message_bytes) * 2;
    if (http.threads < 1 || http.request_timeout <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(
          "--http_threads must be >= 1 and --http_request_timeout positive");
    }
    o.http = http;
  }
  auto tls = longctx::ApplyServerTlsFlags(longctx::ServerTlsOptions(), &o.grpc);
  if (!tls.ok()) return tls.status();
  if (o.http.has_value()) {
    // The HTTP API serves the same certificate as the gRPC port.
    o.http->tls_cert_file = tls->cert_file;
    o.http->tls_key_file = tls->key_file;
    o.http->tls_client_ca_file = tls->client_ca_file;
  }
  auto internal_security = longctx::InternalChannelSecurityFromFlags();
  if (!internal_security.ok()) return internal_security.status();
  o.internal_security = *std::move(internal_security);

  // The internal listener: Rendezvous, behind the internal token and, with
  // an internal certificate, TLS that requires the ranks' certificates.
  auto internal_listen = longctx::ParseHostPort(
      absl::GetFlag(FLAGS_internal_listen_address), "internal_listen_address");
  if (!internal_listen.ok()) return internal_listen.status();
  o.internal_grpc.listen = *internal_listen;
  o.internal_grpc.listen_flag = "--internal_listen_address";
  o.internal_grpc.max_receive_message_bytes = 1 << 20;
  const longctx::ChannelTlsOptions internal_tls =
      longctx::InternalTlsOptionsFromFlags();
  if (!internal_tls.cert_file.empty()) {
    longctx::ServerTlsOptions server_tls;
    server_tls.cert_file = internal_tls.cert_file;
    server_tls.key_file = internal_tls.key_file;
    server_tls.client_ca_file = internal_tls.ca_file;
    server_tls.cert_flag = "--internal_tls_cert";
    server_tls.key_flag = "--internal_tls_key";
    server_tls.client_ca_flag = "--internal_tls_ca";
    auto credentials = longctx::MakeServerCredentials(server_tls);
    if (!credentials.ok()) return credentials.status();
    o.internal_grpc.credentials = *std::move(credentials);
    o.internal_grpc.security_summary = "TLS, client certificates required";
  } else if (o.group_size > 1 && o.internal_security.tls()) {
    return absl::InvalidArgumentError(
        "--internal_tls_ca with --group_size > 1 needs --internal_tls_cert "
        "and --internal_tls_key: ranks reach Rendezvous on "
        "--internal_listen_address over TLS");
  }
  auto internal_token = longctx::InternalTokenFromFlags();
  if (!internal_token.ok()) return internal_token.status();
  o.internal_auth = longctx::InternalAuth(*std::move(internal_token));
  if (absl::GetFlag(FLAGS_rendezvous_max_bytes) < 1 ||
      absl::GetFlag(FLAGS_rendezvous_max_waiters) < 1) {
    return absl::InvalidArgumentError(
        "--rendezvous_max_bytes and --rendezvous_max_waiters must be >= 1");
  }
  o.rendezvous_limits.max_stored_bytes =
      static_cast<size_t>(absl::GetFlag(FLAGS_rendezvous_max_bytes));
  o.rendezvous_limits.max_waiters = absl::GetFlag(FLAGS_rendezvous_max_waiters);
  o.auth_tokens_file = absl::GetFlag(FLAGS_auth_tokens_file);
  o.model_dir = absl::GetFlag(FLAGS_model);
  o.model_name = absl::GetFlag(FLAGS_model_name);
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  constexpr char kProgram[] = "gateway";
  absl::SetProgramUsageMessage(
      "The public endpoint of longctx. Usage: gateway --model=DIR "
      "--workers=host:port,... [--flags]");
  absl::ParseCommandLine(argc, argv);
  absl::Status status =
      longctx::InitProcess(kProgram, absl::GetFlag(FLAGS_log_level));
  if (!status.ok()) return longctx::StartupError(kProgram, status);
  auto options = OptionsFromFlags();
  if (!options.ok()) return longctx::StartupError(kProgram, options.status());
  auto server = longctx::GatewayServer::Start(*std::move(options));
  if (!server.ok()) return longctx::StartupError(kProgram, server.status());
  return longctx::ServeUntilSignal(
      kProgram, (*server)->grpc_server(), (*server)->metrics_server(),
      absl::Seconds(absl::GetFlag(FLAGS_grace_period_seconds)),
      /*mark_serving=*/false, (*server)->drain_hooks());
}
