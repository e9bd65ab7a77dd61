// TokenizerTrainingText: the text the generated test tokenizers learn their
// merges from (see tokenizer_families.h).
#ifndef LONGCTX_MODEL_HF_TOKENIZER_TRAINING_TEXT_H_
#define LONGCTX_MODEL_HF_TOKENIZER_TRAINING_TEXT_H_

#include "absl/strings/string_view.h"

namespace longctx {

// About 21 KB of UTF-8.
absl::string_view TokenizerTrainingText();

}  // namespace longctx

#endif  // LONGCTX_MODEL_HF_TOKENIZER_TRAINING_TEXT_H_
