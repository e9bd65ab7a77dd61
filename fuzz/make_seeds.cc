// make_seeds writes the seed corpora of the fuzz targets
// (fuzz/corpus/<target>/) with the project's own encoders, so the seeds are
// well-formed inputs that the fuzzers then mutate. Deterministic; run it after
// changing an input format:
//
//   bazel run //fuzz:make_seeds -- "$PWD/fuzz/corpus"
//
// Inputs found by fuzzing (regressions) are added to the same folders by
// hand, under names that say what they caught; make_seeds never removes them.
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kvblock/hash128.h"
#include "kvblock/kv_block_format.h"
#include "kvblock/kv_layout.h"
#include "model/folder/io_util.h"
#include "model/folder/model_config.h"
#include "model/folder/safetensors.h"
#include "proto/longctx.pb.h"

namespace longctx {
namespace {

std::string g_root;

void Write(const std::string& target, const std::string& name,
           const std::string& bytes) {
  const std::string dir = JoinPath(g_root, target);
  mkdir(dir.c_str(), 0755);
  const absl::Status status = WriteFileAtomically(JoinPath(dir, name), bytes);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    std::exit(1);
  }
}

void GatewayRequests() {
  const std::string t = "gateway_request";
  v1::GenerateRequest r;
  r.set_text("Once upon a time");
  Write(t, "text", r.SerializeAsString());

  r.set_add_bos(true);
  r.set_request_id("req-1");
  r.set_model("tiny");
  r.mutable_sampling()->set_temperature(0.7f);
  r.mutable_sampling()->set_top_p(0.9f);
  r.mutable_sampling()->set_top_k(40);
  r.mutable_sampling()->set_seed(7);
  r.mutable_stopping()->set_max_new_tokens(32);
  r.mutable_stopping()->add_stop_sequences("upon");
  r.mutable_stopping()->add_stop_sequences("\n\n");
  r.mutable_stopping()->add_stop_token_ids(10);
  r.set_cache_policy(v1::CACHE_POLICY_READ_ONLY);
  r.mutable_logprobs()->set_enabled(true);
  r.mutable_logprobs()->set_top_logprobs(3);
  Write(t, "text_every_field", r.SerializeAsString());

  v1::GenerateRequest u;
  u.set_text("na\xC3\xAFve caf\xC3\xA9 \xE2\x82\xAC 5 \xF0\x9F\x98\x80 done");
  u.mutable_stopping()->add_stop_sequences("\xE2\x82\xAC");
  u.mutable_stopping()->add_stop_sequences("e caf");
  u.mutable_stopping()->set_ignore_eos(true);
  Write(t, "utf8_text_with_stops", u.SerializeAsString());

  v1::GenerateRequest ids;
  for (int id : {256, 72, 105, 257, 258, 259}) {
    ids.mutable_token_ids()->add_ids(id);
  }
  ids.mutable_stopping()->add_stop_sequences("Hi");
  Write(t, "token_ids", ids.SerializeAsString());

  v1::GenerateRequest bad = ids;
  bad.mutable_token_ids()->add_ids(260);
  Write(t, "token_id_outside_vocab", bad.SerializeAsString());

  bad = r;
  bad.mutable_sampling()->set_top_p(1.5f);
  Write(t, "bad_top_p", bad.SerializeAsString());

  bad = r;
  bad.mutable_stopping()->set_max_new_tokens(100000);
  Write(t, "max_new_tokens_over_limit", bad.SerializeAsString());

  bad = r;
  bad.set_text(std::string(2000, 'x'));
  Write(t, "text_over_limit", bad.SerializeAsString());

  bad = r;
  bad.set_cache_policy(static_cast<v1::CachePolicy>(9));
  Write(t, "unknown_cache_policy", bad.SerializeAsString());
}

void TokenizerInputs() {
  const std::string t = "tokenizer";
  Write(t, "ascii", std::string("\x00", 1) + "Hello, world!\n");
  Write(t, "utf8",
        std::string("\x1b") +
            "na\xC3\xAFve \xE2\x82\xAC \xF0\x9F\x98\x80 \xE4\xB8\xAD");
  Write(t, "invalid_bytes",
        std::string("\xe4") +
            "a\xC3(b\xE2\x82 \xF0\x9F\x98 \xFF\xC0\xAF\xED\xA0\x80z");
  // 16-bit ids: bytes, bos 256, eos 257, unused 258, outside 260 and -1.
  Write(t, "special_ids",
        std::string("\x55"
                    "A\x00"
                    "\x00\x01"
                    "\x01\x01"
                    "\x02\x01"
                    "\x04\x01"
                    "\xff\xff"
                    "\xE2\x00",
                    15));
}

void ModelConfigs() {
  const std::string t = "model_config";
  ModelConfig llama;
  llama.architecture = "LlamaForCausalLM";
  llama.hidden_size = 4096;
  llama.intermediate_size = 14336;
  llama.num_hidden_layers = 32;
  llama.num_attention_heads = 32;
  llama.num_key_value_heads = 8;
  llama.head_dim = 128;
  llama.vocab_size = 128256;
  llama.rms_norm_eps = 1e-5;
  llama.rope_theta = 500000.0;
  llama.rope_scaling = Llama3RopeConfig();
  llama.max_position_embeddings = 131072;
  llama.torch_dtype = "bfloat16";
  llama.bos_token_id = 128000;
  llama.eos_token_ids = {128001, 128008, 128009};
  Write(t, "llama3", ModelConfigToJson(llama));

  ModelConfig tiny;
  tiny.architecture = "LlamaForCausalLM";
  tiny.hidden_size = 64;
  tiny.intermediate_size = 128;
  tiny.num_hidden_layers = 2;
  tiny.num_attention_heads = 4;
  tiny.num_key_value_heads = 2;
  tiny.head_dim = 16;
  tiny.vocab_size = 260;
  tiny.max_position_embeddings = 4096;
  tiny.tie_word_embeddings = true;
  tiny.bos_token_id = 256;
  tiny.eos_token_ids = {257};
  Write(t, "tiny", ModelConfigToJson(tiny));

  // As Hugging Face writes them: fields longctx ignores, defaults left out.
  Write(t, "mistral_hf",
        R"({"architectures": ["MistralForCausalLM"], "bos_token_id": 1,
  "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096,
  "initializer_range": 0.02, "intermediate_size": 14336,
  "max_position_embeddings": 32768, "model_type": "mistral",
  "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
  "rms_norm_eps": 1e-05, "rope_theta": 1000000.0, "sliding_window": null,
  "tie_word_embeddings": false, "torch_dtype": "bfloat16",
  "transformers_version": "4.36.0", "use_cache": true, "vocab_size": 32000})");
  Write(t, "qwen2_hf",
        R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
  "intermediate_size": 4864, "num_attention_heads": 14, "num_hidden_layers": 24,
  "num_key_value_heads": 2, "vocab_size": 151936, "use_sliding_window": false,
  "rope_scaling": {"type": "default"}, "eos_token_id": [151643, 151645]})");
  Write(t, "bad_rope",
        R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
  "intermediate_size": 128, "num_attention_heads": 4, "num_hidden_layers": 1,
  "vocab_size": 300, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
  "low_freq_factor": 4.0, "high_freq_factor": 1.0,
  "original_max_position_embeddings": 8192}})");
}

template <typename T>
absl::string_view Bytes(const std::vector<T>& v) {
  return absl::string_view(reinterpret_cast<const char*>(v.data()),
                           v.size() * sizeof(T));
}

void SafetensorsFiles() {
  const std::string t = "safetensors";
  const std::string temp = JoinPath(g_root, "tmp.safetensors");
  auto write = [&](const std::string& name,
                   std::vector<SafetensorsTensorData> tensors,
                   std::map<std::string, std::string> metadata) {
    absl::Status status = WriteSafetensors(temp, tensors, metadata);
    absl::StatusOr<std::string> bytes = ReadFile(temp);
    if (!status.ok() || !bytes.ok()) {
      std::fprintf(stderr, "%s\n", status.ToString().c_str());
      std::exit(1);
    }
    Write(t, name, *bytes);
    std::remove(temp.c_str());
  };
  const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  const std::vector<uint16_t> f16 = {0x3c00, 0xc000, 0x7bff};
  const std::vector<int32_t> i32 = {1, 2, 3, 4};
  const std::vector<uint8_t> u8 = {1, 2, 3};
  write("mixed",
        {{{"model.embed_tokens.weight", "F32", {2, 3}}, Bytes(f32)},
         {{"model.norm.weight", "F16", {3}}, Bytes(f16)},
         {{"scalar", "BF16", {}}, Bytes(std::vector<uint16_t>{0x3f80})},
         {{"position_ids", "I32", {2, 2}}, Bytes(i32)},
         {{"mask", "U8", {3}}, Bytes(u8)},
         {{"empty", "F32", {0, 5}}, ""}},
        {{"format", "pt"}});
  write("one_tensor", {{{"w", "F32", {6}}, Bytes(f32)}}, {});
  write("no_tensors", {}, {{"note", "only metadata"}});
}

void KvBlocks() {
  const std::string t = "kv_block";
  const Hash128 fingerprint{0x0123456789abcdefull, 0xfedcba9876543210ull};
  // The key and token digest kv_block_fuzzer.cc expects.
  const BlockKey id{std::string(kBlockKeyBytes, '\x11'),
                    std::string(kBlockKeyBytes, '\x22')};
  struct Case {
    KvLayout layout;
    int token_count;
  };
  auto layout = [](int l, int h, int d, int b, KvDtype dtype) {
    KvLayout out;
    out.num_layers = l;
    out.num_kv_heads = h;
    out.head_dim = d;
    out.block_size = b;
    out.dtype = dtype;
    return out;
  };
  // The fuzz target's expected layouts, in its order.
  const Case cases[4] = {{layout(1, 1, 2, 1, KvDtype::kF16), 1},
                         {layout(2, 1, 4, 4, KvDtype::kF16), 3},
                         {layout(2, 2, 2, 2, KvDtype::kF32), 2},
                         {layout(3, 1, 1, 2, KvDtype::kF32), 1}};
  for (int i = 0; i < 4; ++i) {
    const KvLayout& l = cases[i].layout;
    std::vector<uint8_t> block(l.BlockBytes());
    for (size_t b = 0; b < block.size(); ++b) block[b] = uint8_t(b * 37 + i);
    absl::StatusOr<std::vector<std::string>> parts =
        EncodeKvBlock(l, fingerprint, id, cases[i].token_count, block.data());
    if (!parts.ok()) std::exit(1);
    // Flags: the layout's index; with and without "repair" (bit 2).
    for (uint8_t flags : {uint8_t(i), uint8_t(i | 4)}) {
      std::string input(1, static_cast<char>(flags));
      for (const std::string& part : *parts) {
        input.push_back(static_cast<char>(part.size() & 0xff));
        input.push_back(static_cast<char>(part.size() >> 8));
        input += part;
      }
      Write(t, absl::StrCat("layout", i, flags & 4 ? "_repair" : ""), input);
    }
  }
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: make_seeds CORPUS_ROOT (e.g. $PWD/fuzz/corpus)\n");
    return 2;
  }
  longctx::g_root = argv[1];
  mkdir(argv[1], 0755);
  longctx::GatewayRequests();
  longctx::TokenizerInputs();
  longctx::ModelConfigs();
  longctx::SafetensorsFiles();
  longctx::KvBlocks();
  std::printf("seeds written under %s\n", argv[1]);
  return 0;
}
