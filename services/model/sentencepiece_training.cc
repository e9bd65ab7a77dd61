#include "services/model/sentencepiece_training.h"

// No Abseil header may be included here (see the header).
#include <sentencepiece_trainer.h>

namespace longctx {

bool TrainSentencePieceModel(const std::string& input_file,
                             const std::string& model_prefix, int vocab_size,
                             std::string* error) {
  const std::string args =
      "--input=" + input_file + " --model_prefix=" + model_prefix +
      " --vocab_size=" + std::to_string(vocab_size) +
      " --model_type=bpe --byte_fallback=true --character_coverage=1.0"
      " --normalization_rule_name=identity --remove_extra_whitespaces=false"
      " --split_digits=true --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1"
      " --num_threads=1 --hard_vocab_limit=false --minloglevel=1";
  const sentencepiece::util::Status status =
      sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) *error = status.ToString();
  return status.ok();
}

}  // namespace longctx
