#include "model/folder/sentencepiece_training.h"

#include "model/folder/sentencepiece_library.h"

namespace longctx {

bool TrainSentencePieceModel(const std::string& input_file,
                             const std::string& model_prefix, int vocab_size,
                             std::string* error) {
  const SentencePieceLibrary* library = GetSentencePieceLibrary(error);
  if (library == nullptr) return false;
  const std::string args =
      "--input=" + input_file + " --model_prefix=" + model_prefix +
      " --vocab_size=" + std::to_string(vocab_size) +
      " --model_type=bpe --byte_fallback=true --character_coverage=1.0"
      " --normalization_rule_name=identity --remove_extra_whitespaces=false"
      " --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
      " --num_threads=1 --hard_vocab_limit=false --minloglevel=1";
  char* message = nullptr;
  if (library->train(args.c_str(), &message) != 0) {
    *error = TakeString(*library, message);
    return false;
  }
  return true;
}

}  // namespace longctx
