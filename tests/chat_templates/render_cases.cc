// render_cases: the C++ side of //tests/chat_templates:reference_test.
// Renders each case of a JSON array of {"template", "context"} with
// longctx's ChatTemplate (Parse, then Render with the default limits) and
// prints one JSON line per case, in the format of
// //tests/tokenizers:reference/render.mjs:
//   {"ok": true, "text": "<rendered text>"}   or
//   {"ok": false, "error": "<message>"}
//
// Usage: render_cases CASES_JSON
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "model/chat_template/chat_template.h"
#include "model/folder/io_util.h"
#include "nlohmann/json.hpp"

namespace longctx {
namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "render_cases: %s\n", message.c_str());
  return 1;
}

nlohmann::json RenderCase(const std::string& source,
                          const nlohmann::json& context) {
  absl::StatusOr<std::unique_ptr<ChatTemplate>> tmpl =
      ChatTemplate::Parse(source);
  if (!tmpl.ok()) {
    return {{"ok", false}, {"error", std::string(tmpl.status().message())}};
  }
  absl::StatusOr<std::string> text = (*tmpl)->Render(context);
  if (!text.ok()) {
    return {{"ok", false}, {"error", std::string(text.status().message())}};
  }
  return {{"ok", true}, {"text", *text}};
}

int Main(int argc, char** argv) {
  if (argc != 2) return Fail("usage: render_cases CASES_JSON");
  absl::StatusOr<std::string> text = ReadFile(argv[1]);
  if (!text.ok()) return Fail(std::string(text.status().message()));
  absl::StatusOr<nlohmann::json> cases = ParseJson(*text, argv[1]);
  if (!cases.ok()) return Fail(std::string(cases.status().message()));
  if (!cases->is_array()) {
    return Fail(absl::StrCat(argv[1], " must hold a JSON array"));
  }
  for (size_t i = 0; i < cases->size(); ++i) {
    const nlohmann::json& c = (*cases)[i];
    if (!c.is_object() || !c.contains("template") ||
        !c["template"].is_string()) {
      return Fail(absl::StrCat("case ", i,
                               ": expected an object with a string "
                               "\"template\""));
    }
    nlohmann::json context = nlohmann::json::object();
    if (c.contains("context")) context = c["context"];
    if (!context.is_object()) {
      return Fail(absl::StrCat("case ", i, ": \"context\" must be an object"));
    }
    const nlohmann::json line =
        RenderCase(c["template"].get<std::string>(), context);
    // Invalid UTF-8 in a rendered text is written as U+FFFD.
    std::printf("%s\n", line.dump(-1, ' ', false,
                                  nlohmann::json::error_handler_t::replace)
                            .c_str());
  }
  return 0;
}

}  // namespace
}  // namespace longctx

int main(int argc, char** argv) { return longctx::Main(argc, argv); }
