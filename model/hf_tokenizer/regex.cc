#include "model/hf_tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "absl/strings/str_cat.h"

namespace longctx {
namespace {

// The JIT matcher's stack: one per thread, grown up to 4 MiB, so that long
// runs of one class (a megabyte of spaces) match without recursion limits on
// the machine stack.
pcre2_jit_stack* ThreadJitStack(void*) {
  struct Holder {
    pcre2_jit_stack* stack = pcre2_jit_stack_create(64 << 10, 4 << 20, nullptr);
    ~Holder() { pcre2_jit_stack_free(stack); }
  };
  thread_local Holder holder;
  return holder.stack;
}

std::string Pcre2Message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof(buffer)) < 0) {
    return absl::StrCat("PCRE2 error ", code);
  }
  return std::string(reinterpret_cast<const char*>(buffer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Regex>> Regex::Compile(absl::string_view pattern,
                                                      bool literal) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  // PCRE2_UCP does not combine with PCRE2_LITERAL (and means nothing there).
  const uint32_t options =
      literal ? PCRE2_UTF | PCRE2_LITERAL : PCRE2_UTF | PCRE2_UCP;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                    pattern.size(), options, &error, &offset, nullptr);
  if (code == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "regular expression \"", pattern,
        "\" does not compile: ", Pcre2Message(error), " at offset ", offset));
  }
  std::unique_ptr<Regex> regex(new Regex());
  regex->pattern_ = std::string(pattern);
  regex->code_ = code;
  // Without JIT support PCRE2 interprets the pattern: slower, same matches.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  if (context == nullptr)
    return absl::ResourceExhaustedError("PCRE2: no memory");
  pcre2_jit_stack_assign(context, ThreadJitStack, nullptr);
  regex->match_context_ = context;
  return regex;
}

Regex::~Regex() {
  pcre2_match_context_free(static_cast<pcre2_match_context*>(match_context_));
  pcre2_code_free(static_cast<pcre2_code*>(code_));
}

absl::Status Regex::ForEachMatch(
    absl::string_view text, absl::FunctionRef<void(size_t, size_t)> fn) const {
  const pcre2_code* code = static_cast<const pcre2_code*>(code_);
  struct MatchData {
    pcre2_match_data* data = pcre2_match_data_create(4, nullptr);
    ~MatchData() { pcre2_match_data_free(data); }
  };
  thread_local MatchData match_data;
  if (match_data.data == nullptr) {
    return absl::ResourceExhaustedError("PCRE2: no memory for match data");
  }
  const PCRE2_SPTR subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    const int rc = pcre2_match(
        code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, match_data.data,
        static_cast<pcre2_match_context*>(match_context_));
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      return absl::InternalError(absl::StrCat(
          "regular expression \"", pattern_, "\" failed at byte ", start,
          " of a ", text.size(), "-byte text: ", Pcre2Message(rc)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.data);
    const size_t match_start = ovector[0], match_end = ovector[1];
    if (match_end > match_start) {
      fn(match_start, match_end);
      start = match_end;
    } else {
      // An empty match: go on after the next character.
      if (match_start >= text.size()) break;
      start = match_start + 1;
      while (start < text.size() &&
             (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) {
        ++start;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace longctx
