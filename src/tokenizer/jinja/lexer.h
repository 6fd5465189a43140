// Template text -> tokens, the way Python Jinja2's lexer does it with the settings Hugging Face
// transformers uses for chat templates: trim_blocks and lstrip_blocks on, the single trailing
// newline of the template dropped, `{%-`/`-%}` (and `{{-`, `{#-`, `+`) whitespace control.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::jinja {

struct SourcePosition {
  int line = 1;
  int column = 1;  // in code points, 1-based
};

// "chat template: line L col C: message", the format of every template error.
std::string positioned_message(SourcePosition position, const std::string& message);

enum class TokenType {
  Text,           // literal template text between tags
  VariableBegin,  // {{
  VariableEnd,    // }}
  BlockBegin,     // {%
  BlockEnd,       // %}
  Name,
  String,
  Integer,
  Float,
  Operator,  // + - * / // % ** ~ == != < <= > >= = ( ) [ ] { } , . : |
  End,
};

struct Token {
  TokenType type = TokenType::End;
  std::string text;  // Text: the literal; String: the decoded value; Name/Operator: as written
  int64_t integer = 0;
  double floating = 0.0;
  SourcePosition position;
};

struct LexerOptions {
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Throws dsv3::Error naming line and column for an unclosed tag, comment or string.
std::vector<Token> tokenize(std::string_view source, LexerOptions options = {});

}  // namespace dsv3::jinja
