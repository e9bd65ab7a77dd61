// TrainSentencePieceModel trains a small SentencePiece model, for tests that
// need a real tokenizer.model without downloading one. Like
// sentencepiece_model.h, this header includes no Abseil (libsentencepiece's
// headers clash with it), and only the .cc includes libsentencepiece.
#ifndef LONGCTX_MODEL_FOLDER_SENTENCEPIECE_TRAINING_H_
#define LONGCTX_MODEL_FOLDER_SENTENCEPIECE_TRAINING_H_

#include <string>

namespace longctx {

// TrainSentencePieceModel trains a BPE model of up to `vocab_size` pieces on
// the lines of `input_file` and writes `model_prefix`.model (and .vocab). The
// model round-trips any UTF-8 exactly: byte fallback for unseen characters,
// identity normalization, whitespace kept; unk = 0, bos = 1, eos = 2.
// Returns false and sets *error on failure. Deterministic for equal inputs.
bool TrainSentencePieceModel(const std::string& input_file,
                             const std::string& model_prefix, int vocab_size,
                             std::string* error);

}  // namespace longctx

#endif  // LONGCTX_MODEL_FOLDER_SENTENCEPIECE_TRAINING_H_
