"""cuda_library: CUDA sources compiled by /usr/local/cuda/bin/nvcc under --config=cuda.

Bazel 4 has no CUDA rules; a genrule runs nvcc on each .cu file and archives the
objects. Outside --config=cuda the targets are incompatible and skipped, so the
default build never needs CUDA.
"""

NVCC = "/usr/local/cuda/bin/nvcc"

# sm_80 (A100) and sm_90 (H100/H200).
NVCC_FLAGS = ("-std=c++17 -O3 -Xcompiler -fPIC -I. " +
              "-gencode arch=compute_80,code=sm_80 " +
              "-gencode arch=compute_90,code=sm_90")

CUDA_ONLY = select({
    "//third_party/build_defs:cuda_enabled": [],
    "//conditions:default": ["//third_party/build_defs:never"],
})

def cuda_library(name, srcs, hdrs = [], deps = [], nvcc_hdrs = [], visibility = None):
    """A cc_library of CUDA code; link it into binaries built with --config=cuda.

    Args:
      name: the cc_library's name.
      srcs: .cu files, compiled by nvcc.
      hdrs: this library's headers.
      deps: cc_library dependencies of the library's users.
      nvcc_hdrs: header files from other packages that srcs include (nvcc sees
        only the files its genrule declares).
      visibility: the cc_library's visibility.
    """
    archive = "lib%s_cuda.a" % name
    objects = []
    # nvcc names its temporary files after the process id, which is the same in
    # every sandbox's pid namespace: give each rule its own temporary folder.
    cmds = ["export TMPDIR=$$(mktemp -d $(@D)/nvcc_tmp_XXXXXX)"]
    for src in srcs:
        obj = "$(@D)/%s_%s.o" % (name, src.replace("/", "_")[:-len(".cu")])
        objects.append(obj)
        cmds.append("%s %s -c $(location %s) -o %s" % (NVCC, NVCC_FLAGS, src, obj))
    cmds.append("rm -rf $$TMPDIR")
    cmds.append("ar rcs $(location %s) %s" % (archive, " ".join(objects)))
    native.genrule(
        name = name + "_nvcc",
        srcs = srcs + hdrs + nvcc_hdrs,
        outs = [archive],
        cmd = " && ".join(cmds),
        message = "nvcc " + " ".join(srcs),
        target_compatible_with = CUDA_ONLY,
    )
    native.cc_library(
        name = name,
        srcs = [archive],
        hdrs = hdrs,
        deps = deps + ["@system//:cuda"],
        linkstatic = True,
        alwayslink = True,
        target_compatible_with = CUDA_ONLY,
        visibility = visibility,
    )
