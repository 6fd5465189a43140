#include "tokenizer/chat_template.h"

#include "tokenizer/jinja/json_convert.h"
#include "tokenizer/jinja/parser.h"

namespace dsv3 {

namespace {

template <typename Json>
jinja::Value context_value(const Json& context) {
  if (!context.is_object()) throw Error("chat template: the render context must be a JSON object");
  try {
    return jinja::value_from_json(context);
  } catch (const jinja::EvalError& error) {
    throw Error(std::string("chat template: bad context: ") + error.what());
  }
}

}  // namespace

ChatTemplate::ChatTemplate(std::string source)
    : source_(std::move(source)), program_(jinja::parse_template(source_)) {}

ChatTemplate::ChatTemplate(std::string source, const jinja::RenderLimits& limits)
    : source_(std::move(source)), program_(jinja::parse_template(source_)), limits_(limits) {}

// The arena outlives every value of the render (declared first, destroyed last), so that it
// can break any reference cycle the template made.
std::string ChatTemplate::render(const nlohmann::json& context) const {
  jinja::RenderArena arena;
  return jinja::render_program(program_, context_value(context), limits_);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  jinja::RenderArena arena;
  return jinja::render_program(program_, context_value(context), limits_);
}

}  // namespace dsv3
