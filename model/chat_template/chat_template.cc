#include "model/chat_template/chat_template.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/chat_template/evaluator.h"
#include "model/chat_template/parser.h"

namespace longctx {

struct ChatTemplate::Program {
  std::unique_ptr<jinja::Template> tmpl;
};

ChatTemplate::ChatTemplate(std::unique_ptr<Program> program)
    : program_(std::move(program)) {}

ChatTemplate::~ChatTemplate() = default;

absl::StatusOr<std::unique_ptr<ChatTemplate>> ChatTemplate::Parse(
    absl::string_view source) {
  absl::StatusOr<std::unique_ptr<jinja::Template>> tmpl =
      jinja::ParseTemplate(source);
  if (!tmpl.ok()) return tmpl.status();
  auto program = std::make_unique<Program>();
  program->tmpl = *std::move(tmpl);
  return std::unique_ptr<ChatTemplate>(new ChatTemplate(std::move(program)));
}

absl::StatusOr<std::string> ChatTemplate::Render(
    const nlohmann::json& context, const ChatTemplateLimits& limits) const {
  return jinja::RenderTemplate(*program_->tmpl, context, limits);
}

}  // namespace longctx
