"""cc_fuzz_test: libFuzzer targets, built with Debian's clang next to the gcc build.

Bazel's C++ toolchain here is gcc, which has no libFuzzer. A fuzz target is built a
second time with /usr/bin/clang++ (Debian packages `clang` and `libclang-rt-14-dev`,
installed by tools/setup.sh) under -fsanitize=fuzzer,address,undefined:

* an aspect walks the target's cc_library deps and compiles each library's sources
  with clang into objects of its own (instrumented for coverage, ASan and UBSan),
  reusing each library's CcInfo for headers, include paths and defines; objects of a
  library are shared by every fuzz target that depends on it. Libraries of generated
  code only (the protos) are not recompiled: the gcc build's archive is linked;
* a rule compiles the target's own source and links everything with the link flags
  the deps carry (the pkg-config flags of @system//:...), so the system libraries
  (protobuf, gRPC, Abseil, ...) are the same uninstrumented Debian ones.

cc_fuzz_test(name, srcs, deps, corpus) makes three targets:

  name + "_fuzzer"  the libFuzzer binary (`bazel run` it with libFuzzer flags);
  name              a test that fuzzes for a bounded time (default 15 s, or
                    $LONGCTX_FUZZ_SECONDS via --test_env) from the seed corpus;
                    crash inputs land in the test's undeclared outputs;
  name + "_replay"  a gcc-built cc_test that runs every corpus file through the
                    target once: checks the corpus (and regression inputs) in the
                    ordinary build, without clang.
"""

CLANG = "/usr/bin/clang++"

_SANITIZE = [
    "-fsanitize=address,undefined",
    # UBSan findings abort like ASan's, so libFuzzer stops and saves the input.
    "-fno-sanitize-recover=all",
    "-fno-omit-frame-pointer",
]

_COMPILE_FLAGS = [
    "-std=c++17",
    "-O1",
    "-gline-tables-only",
    "-fPIC",
    "-fsanitize=fuzzer-no-link",
] + _SANITIZE

# Flags of the gcc build (library copts, linkopts) that the sanitizer build must
# not take: its own optimization level, and OpenMP (clang would need libomp; the
# pragmas are ignored without it, which is fine for fuzzing).
def _keep_flag(flag):
    return not (flag.startswith("-O") or flag == "-fopenmp")

ClangObjectsInfo = provider(
    doc = "What a fuzz target links of its cc_library deps, transitively.",
    fields = {
        "objects": "depset of .o files compiled by clang",
        "archives": "depset of gcc-built static libraries of generated code",
    },
)

def _compile_args(compilation_context, extra_flags):
    args = list(_COMPILE_FLAGS)
    for d in compilation_context.defines.to_list():
        args.append("-D" + d)
    for d in compilation_context.quote_includes.to_list():
        args += ["-iquote", d]
    for d in compilation_context.includes.to_list():
        args += ["-I", d]
    for d in compilation_context.system_includes.to_list():
        args += ["-isystem", d]
    args += [f for f in extra_flags if _keep_flag(f)]
    return args

def _object_name(prefix, src):
    # One object per source path (two sources may share a base name).
    path = src.short_path.replace("../", "external/")
    return "_clang_fuzz/%s/%s.o" % (prefix, path[:-len("." + src.extension)].replace("/", "_"))

def _compile(actions, src, obj, compilation_context, inputs, extra_flags):
    actions.run(
        executable = CLANG,
        arguments = _compile_args(compilation_context, extra_flags) +
                    ["-c", src.path, "-o", obj.path],
        inputs = depset([src] + inputs, transitive = [compilation_context.headers]),
        outputs = [obj],
        mnemonic = "ClangFuzzCompile",
        progress_message = "clang (fuzz) %s" % src.short_path,
        use_default_shell_env = True,
    )

def _sources(files):
    return [f for f in files if f.extension in ("cc", "cpp", "c")]

def _gcc_archives(target):
    """The static libraries the gcc build made of `target` itself."""
    archives = []
    for linker_input in target[CcInfo].linking_context.linker_inputs.to_list():
        if linker_input.owner != target.label:
            continue
        for library in linker_input.libraries:
            archive = library.pic_static_library or library.static_library
            if archive:
                archives.append(archive)
    return archives

def _clang_objects_aspect_impl(target, ctx):
    objects = []
    archives = []
    if ctx.rule.kind == "cc_library" and CcInfo in target:
        srcs = getattr(ctx.rule.files, "srcs", [])
        sources = _sources(srcs)
        if sources and not [src for src in sources if src.is_source]:
            # Generated code only (protos): not what is being fuzzed, and the
            # slowest to compile. Link the gcc build's library of it instead.
            archives = _gcc_archives(target)
        else:
            for src in sources:
                obj = ctx.actions.declare_file(_object_name(ctx.label.name, src))
                _compile(
                    ctx.actions,
                    src,
                    obj,
                    target[CcInfo].compilation_context,
                    srcs,
                    getattr(ctx.rule.attr, "copts", []),
                )
                objects.append(obj)
    deps = [dep for dep in getattr(ctx.rule.attr, "deps", []) if ClangObjectsInfo in dep]
    return [ClangObjectsInfo(
        objects = depset(objects, transitive = [dep[ClangObjectsInfo].objects for dep in deps]),
        archives = depset(archives, transitive = [dep[ClangObjectsInfo].archives for dep in deps]),
    )]

clang_objects_aspect = aspect(
    implementation = _clang_objects_aspect_impl,
    attr_aspects = ["deps"],
)

def _clang_fuzz_binary_impl(ctx):
    merged = cc_common.merge_cc_infos(cc_infos = [d[CcInfo] for d in ctx.attr.deps])
    own_objects = []
    for src in _sources(ctx.files.srcs):
        obj = ctx.actions.declare_file(_object_name(ctx.label.name, src))
        _compile(ctx.actions, src, obj, merged.compilation_context, ctx.files.srcs, [])
        own_objects.append(obj)
    objects = depset(own_objects, transitive = [d[ClangObjectsInfo].objects for d in ctx.attr.deps])
    archives = depset(transitive = [d[ClangObjectsInfo].archives for d in ctx.attr.deps])

    link_flags = []
    for linker_input in merged.linking_context.linker_inputs.to_list():
        link_flags += [f for f in linker_input.user_link_flags if _keep_flag(f)]
    out = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.run(
        executable = CLANG,
        arguments = ["-fsanitize=fuzzer"] + _SANITIZE + ["-o", out.path] +
                    [o.path for o in objects.to_list()] +
                    [a.path for a in archives.to_list()] + link_flags,
        inputs = depset(transitive = [objects, archives]),
        outputs = [out],
        mnemonic = "ClangFuzzLink",
        progress_message = "clang (fuzz) linking %s" % out.short_path,
        use_default_shell_env = True,
    )
    return [DefaultInfo(executable = out, files = depset([out]))]

clang_fuzz_binary = rule(
    implementation = _clang_fuzz_binary_impl,
    attrs = {
        "srcs": attr.label_list(allow_files = [".cc", ".h"]),
        "deps": attr.label_list(providers = [CcInfo], aspects = [clang_objects_aspect]),
    },
    executable = True,
)

def cc_fuzz_test(name, srcs, deps, corpus, dict = None, seconds = 15, tags = [], **kwargs):
    """A libFuzzer target: a bounded fuzzing test and a gcc corpus replay test.

    Args:
      name: the fuzzing test; see the file's docstring for the other targets.
      srcs: the target's sources: one defines LLVMFuzzerTestOneInput.
      deps: cc_library targets it uses.
      corpus: the seed corpus folder, relative to this package.
      dict: an optional libFuzzer dictionary file.
      seconds: how long the test fuzzes by default.
    """
    corpus_files = native.glob([corpus + "/*"])
    clang_fuzz_binary(
        name = name + "_fuzzer",
        srcs = srcs,
        deps = deps,
        tags = tags,
    )
    native.sh_test(
        name = name,
        size = "medium",
        srcs = ["//fuzz:run_fuzzer.sh"],
        args = [
            "$(location :%s_fuzzer)" % name,
            native.package_name() + "/" + corpus,
            str(seconds),
        ] + (["$(location %s)" % dict] if dict else []),
        data = [":" + name + "_fuzzer"] + corpus_files + ([dict] if dict else []),
        tags = ["fuzz"] + tags,
        **kwargs
    )
    native.cc_test(
        name = name + "_replay",
        size = "small",
        srcs = srcs,
        args = [native.package_name() + "/" + corpus],
        data = corpus_files,
        deps = deps + ["//fuzz:replay_main"],
        tags = tags,
    )
