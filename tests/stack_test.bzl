"""stack_test: a multi-process test of real longctx binaries on loopback ports."""

# The binaries a stack test starts (tests/testing/stack.h finds them in its runfiles).
STACK_BINARIES = [
    "//memory_store",
    "//services/gateway",
    "//services/worker",
    "//tools/make_tiny_model",
]

# What every stack test links: the stack launcher, the generate helpers and the
# public and worker protos.
STACK_DEPS = [
    "//proto:longctx_cc_proto",
    "//proto:worker_cc_proto",
    "//tests/testing:generate",
    "//tests/testing:process",
    "//tests/testing:stack",
    "@system//:absl",
    "@system//:grpc",
    "@system//:gtest_main",
]

def stack_test(name, size = "medium", data = [], deps = [], binaries = STACK_BINARIES, **kwargs):
    """A cc_test from <name>.cc over the stack's binaries and fixtures.

    Args:
      name: the test; its source is <name>.cc.
      size: the Bazel test size.
      data: runfiles beyond `binaries` (clients, tools, protos).
      deps: libraries beyond STACK_DEPS.
      binaries: the stack's binaries the test starts; all four by default.
      **kwargs: passed to cc_test.
    """
    native.cc_test(
        name = name,
        size = size,
        srcs = [name + ".cc"],
        data = binaries + [d for d in data if d not in binaries],
        deps = STACK_DEPS + [d for d in deps if d not in STACK_DEPS],
        **kwargs
    )
