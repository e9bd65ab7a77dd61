"""cc_grpc_library: C++ (and gRPC) code from .proto files with the system protoc.

Bazel 4's native proto rules would download protobuf's sources; longctx uses Debian's
`protoc` and `grpc_cpp_plugin` instead. Proto files import each other by their path
from the workspace root (e.g. `import "proto/longctx.proto";`), and the generated headers
are included the same way (`#include "proto/longctx.pb.h"`).
"""

def cc_grpc_library(name, srcs, deps = [], grpc = True, visibility = None, testonly = False):
    """Generates and compiles the messages (and services, if grpc) of `srcs`.

    Args:
      name: the cc_library; `name + "_protos"` is a filegroup of the .proto files
        with those of `deps`, for rules that need the sources.
      srcs: .proto files in this package.
      deps: other cc_grpc_library targets whose .proto files these import.
      grpc: whether to generate service stubs (*.grpc.pb.{h,cc}).
    """
    native.filegroup(
        name = name + "_protos",
        srcs = srcs + [dep + "_protos" for dep in deps],
        visibility = visibility,
        testonly = testonly,
    )
    outs = []
    for src in srcs:
        base = src[:-len(".proto")]
        outs += [base + ".pb.h", base + ".pb.cc"]
        if grpc:
            outs += [base + ".grpc.pb.h", base + ".grpc.pb.cc"]
    grpc_flags = "--grpc_out=$(GENDIR) --plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin " if grpc else ""
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [name + "_protos"],
        outs = outs,
        cmd = ("protoc --proto_path=. --cpp_out=$(GENDIR) " + grpc_flags +
               " ".join(["$(location %s)" % s for s in srcs])),
        message = "protoc " + " ".join(srcs),
        testonly = testonly,
    )
    native.cc_library(
        name = name,
        srcs = [o for o in outs if o.endswith(".cc")],
        hdrs = [o for o in outs if o.endswith(".h")],
        deps = deps + ["@system//:protobuf"] + (["@system//:grpc"] if grpc else []),
        visibility = visibility,
        testonly = testonly,
    )
