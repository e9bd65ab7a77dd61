// The text make_tiny_model's tokenizers learn their merges from: the
// project's own design notes and code, and sentences in the scripts users
// send (Latin, Cyrillic, Greek, CJK, Arabic, Devanagari), numbers, emoji
// and whitespace runs. Frozen here so that generated tokenizers do not
// change when the documents do.
#include "model/hf_tokenizer/training_text.h"

namespace longctx {

absl::string_view TokenizerTrainingText() {
  static constexpr char kText[] = R"longctx_text(# longctx — design

longctx serves large language models on **very long inputs** (whole books, code bases,
contracts: 10^4–10^6 tokens). Three services cooperate over gRPC:

```
 gRPC client ──► gateway ──(control: gRPC)──► worker group (P ranks, one device each)
                    │                            │  ▲  ring of KV / queries:
                    │                            │  │  NCCL on GPUs, Gloo (TCP) on CPUs
                    │                            ▼  │
                    └──(prefix lookup: gRPC)──► memory_store shards (RocksDB on local disk)
 every process: /metrics for Prometheus, grpc.health.v1 for Kubernetes probes
```

* **gateway** — the only public endpoint. Validates and tokenizes requests, hashes the
  prompt into KV blocks, asks the memory store how long a prefix is already cached,
  picks a worker group (least loaded, preferring the group that already holds the
  prefix), streams tokens back, enforces limits, deadlines, cancellation and auth.
* **worker** — hosts the model on one device (GPU, or CPU cores) and is one *rank* of a
  group of P ranks that together hold one long sequence. The sequence is split across
  the ranks (context parallelism); weights are replicated on every rank.
* **memory_store** — a content-addressed store of KV blocks on RocksDB. Workers write
  finished blocks behind the computation (offload) and read them back when a later
  request starts with the same prefix (restore on demand), so a long document is
  prefilled once and then served from storage, even after restarts.

## The model

* Llama-family decoders: RMSNorm, rotary embeddings (with `rope_theta` and Llama-3
  style `rope_scaling`), grouped-query attention, SwiGLU MLP, optional q/k/v biases
  (Qwen2), tied or untied embeddings. Read from a Hugging Face model folder:
  `config.json` + `*.safetensors` (single file or sharded with
  `model.safetensors.index.json`), weights in F32, F16 or BF16.
* A seeded **tiny random model** made by the project's own tool is the embedded default
  (no weights can be downloaded): it makes every command and test work on a fresh
  machine. Real checkpoints are used the same way, by pointing `--model` at a folder.
* Tokenizer: byte-level for the tiny model; SentencePiece (`tokenizer.model`) when the
  folder has one; clients may always send token ids directly.
* One forward pass per engine step over the `ForwardModel` seam
  (`engine/forward_model.h`), with a backend per device, chosen by the worker's
  `--device` (`model/model_backend.h`):
  * CPU (`LlamaModel`): GEMMs through oneDNN in fp32, or bf16 on AVX512-BF16/AMX
    (dispatched by CPUID), a tiled flash-attention kernel, the KV pool in host memory.
  * CUDA (`model/cuda/CudaLlamaModel`, built with `--config=cuda`): weights
    in bf16 (or fp32) on the device, cuBLASLt GEMMs, the kernels of `kernels/cuda`
    (fused norm, rotary + KV store, tensor-core paged prefill attention, split-KV
    decode attention), decode steps replayed as CUDA graphs, the KV pool in device
    memory; logits come back to the host for the engine's sampler.
  The KV cache is fp16 by default and its blocks are the same bytes on either backend,
  so a document prefilled on a GPU restores on CPU ranks and the other way round. A
  backend that breaks for good (a GPU fault) reports it (`health`) and the worker
  stops serving. A group of ranks runs on CPUs for now.

## Splitting a sequence across ranks (context parallelism)

* A prompt of N tokens is cut into blocks of B tokens (default 256). The blocks are
  dealt to the P ranks of a group so that causal work is balanced (zig-zag: rank r takes
  chunks r and 2P-1-r), and each rank keeps the KV of its own blocks only. Memory per
  rank is therefore ~N/P tokens of KV: the context a group can hold grows with P.
* **Prefill = ring attention, pass-KV.** Per layer each rank computes Q, K, V for its
  tokens, attends to its own KV, then passes its K,V chunk around the ring P-1 times;
  partial results are merged exactly with log-sum-exp (online softmax). Chunks wholly
  in the causal future are skipped. Sends overlap with compute.
* **Decode = pass-Q.** The rank that owns the newest position computes q,k,v for the
  new token, broadcasts q; every rank computes partial attention (output + LSE) over
  its local KV; the partials are gathered and merged at the owner, which finishes the
  layer. New KV goes to the rank with the most free room.
* One `Communicator` interface (send, recv, broadcast, gather, barrier) with two
  engines: **NCCL** between GPUs, **Gloo** over TCP between CPU ranks. Rank discovery
  and the NCCL unique id / Gloo store go through a rendezvous that the deployment
  provides (the gateway's internal port in a cluster — never its public one — or a
  file or loopback service on one machine).
* Invariant, tested: the tokens and logits from a group of P ranks equal those of one
  rank (to fp32 rounding), for every P and every split.

## KV blocks, offload and restore

* A block is B tokens. Its key is a chained SHA-256 (`kvblock/block_keys.h`):
  `D_i = SHA-256(token ids of block i)`, `K_i = SHA-256(K_{i-1} ‖ D_i)`, seeded with
  `K_{-1} = SHA-256(domain ‖ model fingerprint ‖ cache namespace)`. The fingerprint
  covers architecture, shapes, dtype and a digest of the weights. Equal prefixes give
  equal keys across requests and restarts; different models never collide; and since
  SHA-256 is collision resistant, nobody can build a second prefix with someone else's
  key (the earlier non-cryptographic `Hash128` chain allowed exactly that: a client
  could store a block first under a victim's key and change every later answer). The
  key is a security boundary, so it is SHA-256 and not the faster `Hash128`, which
  stays for the checksums and the model fingerprint. Cost: one SHA-256 pass over the
  token ids (4 bytes a token) — about 3 ms for a 1,048,576-token prompt with OpenSSL.
* **Cache namespaces**: blocks are shared only between requests of one namespace. The
  gateway sets it from the bearer token's tenant (`--auth_tokens_file`: a tenant's
  namespace is its name unless `cache_namespace=` names one it shares with others);
  without tokens every request is in the namespace `""`. The worker seeds every key
  with it, so the prefix cache, the memory store, the gateway's affinity router and
  `usage.cached_tokens` all see only the request's own namespace: a tenant cannot
  read another's blocks, nor tell from `cached_tokens` or from timing whether someone
  else sent a text.
* Value: a header (format version 2: fingerprint, the block's key and token digest,
  layer count, kv heads, head dim, dtype, token count, a checksum per layer and one
  of the header) followed by K and V for every layer. A restore checks that the
  header names the key and token digest it asked for, so a block copied or written
  under another key is never served. The checksums (`Hash128`) catch corruption, not
  forgery: what keeps forged blocks out is that only the internal plane can `Put`
  and that a stored block is never replaced.
  Layers are addressable on their own so a restore can stream layer by layer and
  overlap with compute. The element type of a stored block is `KvDtype` (f16 or f32,
  written as 0 or 1): a format value shared by the worker, the store and the gateway,
  kept apart from the kernels' compute `DType` (which adds bf16) on purpose, so that
  neither the store nor the gateway links CPU kernel code and a new compute type
  never silently becomes a storage type; the model maps one to the other in one place
  (`llama_model.cc`).
* **Offload:** a block is written to the memory store as soon as it is complete, off
  the critical path. A worker keeps a bounded pool of blocks in memory; under pressure
  it drops the least recently used blocks that are already stored.
* **Restore on demand:** for a new request the gateway finds the longest stored prefix;
  the ranks read those blocks instead of recomputing them and prefill only the rest.
  A block that fails its checksum, fingerprint, key or token digest is a miss: it is
  recomputed, never served, and counted.
* **Put if absent:** the store never replaces a block. A `Put` under a stored key with
  the same part 0 (the header, which carries every layer's checksum) is the same block
  and a no-op; any other is refused with ALREADY_EXISTS and counted
  (`longctx_store_put_conflicts_total`; the offloader counts its side in
  `longctx_offload_conflicts_total`). The first block stored under a key is what every
  reader gets until it is evicted or deleted. The same prefix computed by a GPU rank
  and a CPU rank differs in rounding, so on a mixed deployment a few conflicts are
  expected and harmless: both blocks are valid for the key.
* **memory_store:** RocksDB with integrated blob files for the large values, write-ahead
  log on and synced before a Put is acknowledged, outside the writers' lock so that
  concurrent Puts share one fsync (a block acknowledged is a block kept, across
  `kill -9` and power cuts; `--sync_writes=false` keeps only the former), a byte budget
  with least-recently-used eviction, streaming gRPC reads and writes (no 4 MiB message
  limit), and shards placed by rendezvous hashing of the block key.

## Public API (proto/)

* `longctx.v1.LongContext`: `Generate` (server streaming: token ids and text as they
  are produced, then usage — prompt, cached and generated tokens — finish reason and
  timings), `Tokenize`, `GetModelInfo`. Prompt as text or token ids; sampling by
  temperature, top-k, top-p, seed; stop sequences; max new tokens; per-request cache
  policy; optional log-probabilities of the generated tokens with top-N alternatives. Internal services live in their own protos and are never exposed publicly.
* Standard gRPC health checking and server reflection on every service.
* Errors are gRPC status codes with a clear message: INVALID_ARGUMENT for bad input,
  RESOURCE_EXHAUSTED for too-long prompts or full queues, UNAVAILABLE when a worker
  is gone, DEADLINE_EXCEEDED and CANCELLED as the client asked.

## Metrics (Prometheus)

Every process exposes `/metrics`. Names follow Prometheus conventions (`longctx_`
prefix, base units, `_total` counters, `_seconds` histograms): time to first token,
inter-token latency, end-to-end latency, queue time, prefill and decode step time,
prompt/cached/generated tokens, requests by status, running and waiting requests,
KV blocks used and capacity, prefix-cache hit and miss tokens, bytes and seconds of
offload and restore, ring bytes sent, store size and evictions.

## Deployment

* `deploy/k8s`: kustomize base with the gateway as a Deployment + Service, workers
  as a StatefulSet (stable ranks, headless Service, `nvidia.com/gpu` in the GPU
  overlay), memory_store as a StatefulSet with a PersistentVolumeClaim; native gRPC
  liveness/readiness probes; a ServiceMonitor; overlays `cpu` and `gpu`.
* `deploy/docker`: images built on Debian bookworm with the same system packages.
* `deploy/local`: the whole stack on one machine, which is what the README's first
  command runs.

## Layout

One folder per concept of this document:

```
WORKSPACE  BUILD  .bazelrc  README.md
proto/          public and internal .proto files, one Bazel target each
kernels/        plain functions over buffers: attention (flash, with LSE), LSE merge,
                RMSNorm, RoPE, SwiGLU, GEMM (oneDNN), sampling; cpu/ behind one header
                per kernel; cuda/: the same on device memory, plus the GPU model's own
                (cuBLASLt GEMM, fused layer steps, paged prefill and split-KV decode
                attention)
kvblock/        the KV block: chained SHA-256 block keys (block_keys), the Hash128
                checksum (hash128), its layout, and
                the bytes it is stored as (kv_block_format)
engine/         continuous batching over a ForwardModel (the seam every model
                implements), sampling, the paged KV block pool and its memory, offload
                and restore through the memory store
model/          the Llama forward pass on each device: llama_model (CPU), cuda/ (GPU),
                model_backend (which one --device picks); folder/ reads a model folder
                (config, safetensors, tokenizers)
parallel/       context parallelism: communicators (Gloo; NCCL), the rendezvous store,
                the step plan, block placement and ring attention, the group
services/       the servers: gateway/, worker/ (its gRPC service and main),
                rendezvous/, common/ (gRPC server, metrics, TLS, status, logging)
memory_store/   RocksDB block store, its gRPC service and its client
deploy/         k8s/, docker/, local/
tests/          multi-process tests: whole stack on loopback, faults, bad input,
                Python client, Prometheus scrape
tools/          tiny-model maker, load generator, benchmarks, gpu/ (pack and check
                on a GPU machine)
third_party/    system-library and offline Bazel repositories
```

Library dependencies point one way (an arrow: "uses"; `services/common` and `proto`
are used throughout and left out; tests may reach a layer up: the engine's tests run
the CPU model):

```
 services/worker ──► parallel ──► model ──► engine ──► memory_store (client) ──► kvblock
                        │          │  │        └──────────────────────────────────► kvblock
                        │          │  └─► model/folder ──► kvblock
                        └──────────┴─────► kernels
 services/gateway ──► model/folder, memory_store (client), kvblock
```

`engine` defines the interface a model implements (`ForwardModel`) and the pool it
writes; `model` implements it per device; `parallel` implements it again for a group
of ranks, over `model`'s layer attention; the worker service picks one and serves it.

`engine` holds no wire type: it reports `TokenEvent`s with its own `TokenLogprob` and
`FinishReason`, and the worker service turns them into `worker.pr
#include "model/folder/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/folder/io_util.h"
#include "model/folder/sentencepiece_model.h"

namespace longctx {
namespace {

constexpr absl::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD.
// A UTF-8 character has at most 4 bytes, so at most 4 tokens can be needed
// to complete one; text held back longer than that is not going to be.
constexpr int kMaxHeldTokens = 4;
// The detokenizer's window is cut back to one token beyond this size.
constexpr size_t kMaxWindow = 16;

// ValidPrefixLength returns how many bytes at the start of `s` (at most one
// character) form a valid UTF-8 character or the valid beginning of one (cut
// short by the end of `s` or by a byte that cannot follow); `*complete` says
// which. Returns 0 when s[0] cannot start a character.
size_t ValidPrefixLength(absl::string_view s, bool* complete) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char lead = byte(0);
  size_t length;
  unsigned char low = 0x80, high = 0xBF;  // Range of the second byte.
  if (lead < 0x80) {
    *complete = true;
    return 1;
  } else if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    if (lead == 0xE0) low = 0xA0;   // No overlong forms.
    if (lead == 0xED) high = 0x9F;  // No surrogates.
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    if (lead == 0xF0) low = 0x90;   // No overlong forms.
    if (lead == 0xF4) high = 0x8F;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  size_t i = 1;
  for (; i < length && i < s.size(); ++i) {
    const unsigned char c = byte(i);
    const unsigned char lo = i == 1 ? low : 0x80, hi = i == 1 ? high : 0xBF;
    if (c < lo || c > hi) break;
  }
  *complete = i == length;
  return i;
}

// SanitizeUtf8 returns `s` with every byte sequence that is not UTF-8
// replaced by U+FFFD (one per maximal invalid part).
std::string SanitizeUtf8(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    bool complete = false;
    const size_t n = ValidPrefixLength(s.substr(i), &complete);
    if (n > 0 && complete) {
      out.append(s.data() + i, n);
      i += n;
    } else {
      out.append(kReplacement.data(), kReplacement.size());
      i += std::max<size_t>(n, 1);
    }
  }
  return out;
}

// IncompleteTailLength returns the length of the end of `s` that may still
// become text when more bytes come: the valid beginning of a character, or
// replacement characters (a library's stand-in for such bytes).
size_t IncompleteTailLength(absl::string_view s) {
  size_t tail = 0;
  while (s.size() - tail >= kReplacement.size() &&
         s.substr(s.size() - tail - kReplacement.size(), kReplacement.size()) ==
             kReplacement) {
    tail += kReplacement.size();
  }
  if (tail > 0) return tail;
  // The last character starts at most 3 bytes before the end.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const unsigned char c = static_cast<unsigned char>(s[s.size() - back]);
    if ((c & 0xC0) == 0x80) continue;  // A continuation byte.
    bool complete = false;
    const size_t n = ValidPrefixLength(s.substr(s.size() - back), &complete);
    return n == back && !complete ? back : 0;
  }
  return 0;
}

}  // namespace

absl::StatusOr<std::string> Tokenizer::Decode(
    absl::Span<const int32_t> ids) const {
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ",
                       vocab_size(), ")"));
    }
  }
  return SanitizeUtf8(DecodeRaw(ids));
}

std::unique_ptr<IncrementalDetokenizer> Tokenizer::NewDetokenizer() const {
  return std::make_unique<IncrementalDetokenizer>(this);
}

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer* tokenizer)
    : tokenizer_(tokenizer) {}

std::string IncrementalDetokenizer::DecodeWindow() const {
  std::string text;
  size_t run_start = 0;
  for (size_t i = 0; i <= window_.size(); ++i) {
    if (i < window_.size() && window_[i] >= 0) continue;
    if (i > run_start) {
      text += tokenizer_->DecodeRaw(
          absl::MakeConstSpan(window_).subspan(run_start, i - run_start));
    }
    if (i < window_.size())
      text.append(kReplacement.data(), kReplacement.size());
    run_start = i + 1;
  }
  return text;
}

std::string IncrementalDetokenizer::Push(absl::Span<const int32_t> ids) {
  std::string out;
  // One id at a time, so that held-back text is counted in tokens.
  for (int32_t id : ids) {
    window_.push_back(id >= 0 && id < tokenizer_->vocab_size() ? id : -1);
    const std::string text = DecodeWindow();
    const size_t start = std::min(emitted_, text.size());
    size_t tail = IncompleteTailLength(absl::string_view(text).substr(

Long documents, in every language our users write.
Le serveur lit un livre entier, puis répond aux questions sur chaque chapitre sans relire le texte.
Der Dienst liest ein ganzes Buch einmal und beantwortet danach Fragen zu jedem Kapitel, ohne den Text erneut zu lesen.
El servidor lee un libro completo una sola vez y luego responde preguntas sobre cada capítulo.
Сервер читает всю книгу один раз, а потом отвечает на вопросы о каждой главе, не перечитывая текст.
Ο διακομιστής διαβάζει ολόκληρο το βιβλίο μία φορά και μετά απαντά σε ερωτήσεις.
服务器只读一遍整本书，然后回答关于每一章的问题，不需要重新阅读全文。长文档，一次预填充，多次使用。
サーバーは本を一度だけ読み、その後は各章についての質問に答えます。長い文書を一度だけ処理します。
서버는 책 전체를 한 번 읽고 나서 각 장에 대한 질문에 답합니다.
يقرأ الخادم الكتاب كله مرة واحدة ثم يجيب عن الأسئلة حول كل فصل.
सर्वर पूरी किताब एक बार पढ़ता है और फिर हर अध्याय के बारे में सवालों के जवाब देता है।
Numbers: 262144 tokens, 1048576 tokens, 0.4% of the cold time, 3.14159, 2026-12-07, $1,299.99, 10^6, 0x7FFF.
Emoji: 📚 🚀 ✅ ❌ 🙂 👩‍💻 🇫🇷 — and symbols: → ← ≤ ≥ ≠ ∞ © ® ™ € £ ¥ § ¶ • … “quoted” ‘single’ «guillemets».
Whitespace:	tab	separated	values
    indented by four spaces
	and a line that ends with spaces   
)longctx_text";
  return absl::string_view(kText, sizeof(kText) - 1);
}

}  // namespace longctx
