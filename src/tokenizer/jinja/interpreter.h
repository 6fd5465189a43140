// Walks a parsed template and writes its output, with Python Jinja2's scoping (a for loop or
// macro body has its own variables; `namespace()` objects carry state out of them) and with
// limits so that a hostile template fails cleanly instead of exhausting time or memory.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "tokenizer/jinja/ast.h"
#include "tokenizer/jinja/value.h"

namespace dsv3::jinja {

struct RenderLimits {
  size_t max_output_bytes = size_t{64} << 20;  // also the longest string an expression may build
  int64_t max_loop_iterations = 10'000'000;    // over all loops of one render
  int64_t max_range_size = 1'000'000;
  int max_macro_depth = 100;
  int max_eval_depth = 1500;  // nested expression/statement evaluations, bounding stack use
};

// Renders `program` with the entries of `context` (a dict) as its variables. If the context
// has an integer `strftime_now_epoch`, strftime_now() formats that UTC time (reproducible
// output); otherwise the local time now. Throws dsv3::Error with the template position.
std::string render_program(const Body& program, const Value& context,
                           const RenderLimits& limits = {});

}  // namespace dsv3::jinja
