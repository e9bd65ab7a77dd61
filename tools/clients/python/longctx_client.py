#!/usr/bin/python3
"""A minimal Python client of longctx's public API (longctx.v1.LongContext).

Stubs are generated from proto/longctx.proto on first use with Debian's protoc and
grpc_python_plugin (packages protobuf-compiler and protobuf-compiler-grpc), into a
cache folder; only python3-grpcio and python3-protobuf are needed at run time.

  tools/clients/python/longctx_client.py --address 127.0.0.1:50051 \
      --max-new-tokens 32 < book.txt

With TLS and a bearer token (a gateway with --tls_cert and --auth_tokens_file):

  tools/clients/python/longctx_client.py --address gw.example:50051 \
      --tls-ca ca.crt --token-file token < book.txt
"""
import argparse
import importlib
import os
import subprocess
import sys
import tempfile

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def load_stubs(cache_dir=None):
    """Generates (once) and imports longctx_pb2 and longctx_pb2_grpc."""
    cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "longctx_python_stubs")
    marker = os.path.join(cache_dir, "proto", "longctx_pb2_grpc.py")
    source = os.path.join(REPO, "proto", "longctx.proto")
    if not os.path.exists(marker) or os.path.getmtime(marker) < os.path.getmtime(source):
        os.makedirs(cache_dir, exist_ok=True)
        subprocess.run(
            ["protoc", "--proto_path=" + REPO, "--python_out=" + cache_dir,
             "--grpc_python_out=" + cache_dir,
             "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
             "proto/longctx.proto"],
            check=True, cwd=REPO)
    if cache_dir not in sys.path:
        sys.path.insert(0, cache_dir)
    return (importlib.import_module("proto.longctx_pb2"),
            importlib.import_module("proto.longctx_pb2_grpc"))


def read_token(path):
    """The first line of `path` that is neither blank nor a '#' comment."""
    with open(path, encoding="ascii") as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                return line
    raise ValueError(f"--token-file={path} holds no token")


def open_channel(grpc, args):
    """A plaintext or TLS channel to args.address, as the flags ask."""
    use_tls = args.tls or args.tls_ca or args.tls_cert or args.tls_key
    if not use_tls:
        return grpc.insecure_channel(args.address)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ValueError("--tls-cert and --tls-key go together")

    def read(path):
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.tls_ca),
        private_key=read(args.tls_key),
        certificate_chain=read(args.tls_cert))
    options = []
    if args.tls_server_name:
        options.append(("grpc.ssl_target_name_override", args.tls_server_name))
    return grpc.secure_channel(args.address, credentials, options=options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ignore-eos", action="store_true",
                        help="keep generating past end-of-sequence")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--token", default=None,
                        help="bearer token (visible in the process list: "
                             "prefer --token-file)")
    parser.add_argument("--token-file", default=None,
                        help="file whose first non-comment line is the token")
    parser.add_argument("--tls", action="store_true",
                        help="TLS trusting the system's CAs")
    parser.add_argument("--tls-ca", default=None,
                        help="PEM CA bundle of the gateway's certificate")
    parser.add_argument("--tls-cert", default=None, help="PEM client certificate")
    parser.add_argument("--tls-key", default=None, help="PEM client key")
    parser.add_argument("--tls-server-name", default=None,
                        help="name to check the certificate against")
    parser.add_argument("--chat", action="store_true",
                        help="send the prompt as a user message, rendered by "
                        "the model's chat template")
    parser.add_argument("--system", default=None,
                        help="with --chat: a system message before it")
    parser.add_argument("prompt", nargs="?", help="prompt text (default: stdin)")
    args = parser.parse_args()

    import grpc
    if args.token and args.token_file:
        parser.error("give --token or --token-file, not both")
    try:
        token = read_token(args.token_file) if args.token_file else args.token
        channel = open_channel(grpc, args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    metadata = [("authorization", "Bearer " + token)] if token else None
    pb, pb_grpc = load_stubs()
    text = args.prompt if args.prompt is not None else sys.stdin.read()
    if args.system is not None and not args.chat:
        parser.error("--system needs --chat")
    if args.chat:
        request = pb.GenerateRequest()
        if args.system is not None:
            request.messages.messages.add(role="system", content=args.system)
        request.messages.messages.add(role="user", content=text)
    else:
        request = pb.GenerateRequest(text=text)
    request.stopping.max_new_tokens = args.max_new_tokens
    request.stopping.ignore_eos = args.ignore_eos
    if args.temperature is not None:
        request.sampling.temperature = args.temperature
    if args.seed is not None:
        request.sampling.seed = args.seed
    with channel:
        stub = pb_grpc.LongContextStub(channel)
        last = None
        try:
            for response in stub.Generate(request, timeout=args.timeout,
                                          metadata=metadata):
                sys.stdout.write(response.text)
                sys.stdout.flush()
                last = response
        except grpc.RpcError as error:
            print(f"\nerror: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    u, t = last.usage, last.timings
    print(f"\n[{pb.FinishReason.Name(last.finish_reason)}] prompt {u.prompt_tokens} "
          f"tokens ({u.cached_tokens} cached), generated {u.generated_tokens}; "
          f"first token {t.time_to_first_token_seconds:.3f}s, total {t.total_seconds:.3f}s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
