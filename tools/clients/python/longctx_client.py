#!/usr/bin/python3
"""A minimal Python client of longctx's public API (longctx.v1.LongContext).

Stubs are generated from proto/longctx.proto on first use with Debian's protoc and
grpc_python_plugin (packages protobuf-compiler and protobuf-compiler-grpc), into a
cache folder; only python3-grpcio and python3-protobuf are needed at run time.

  tools/clients/python/longctx_client.py --address 127.0.0.1:50051 \
      --max-new-tokens 32 < book.txt
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("prompt", nargs="?", help="prompt text (default: stdin)")
    args = parser.parse_args()

    import grpc
    pb, pb_grpc = load_stubs()
    text = args.prompt if args.prompt is not None else sys.stdin.read()
    request = pb.GenerateRequest(text=text)
    request.stopping.max_new_tokens = args.max_new_tokens
    if args.temperature is not None:
        request.sampling.temperature = args.temperature
    if args.seed is not None:
        request.sampling.seed = args.seed
    with grpc.insecure_channel(args.address) as channel:
        stub = pb_grpc.LongContextStub(channel)
        last = None
        try:
            for response in stub.Generate(request, timeout=args.timeout):
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
