#include "tokenizer/jinja/lexer.h"

#include <algorithm>
#include <cstring>

#include "tokenizer/jinja/text.h"
#include "util/error.h"

namespace dsv3::jinja {

std::string positioned_message(SourcePosition position, const std::string& message) {
  return "chat template: line " + std::to_string(position.line) + " col " +
         std::to_string(position.column) + ": " + message;
}

namespace {

// Jinja splits the source on \r\n, \r and \n, drops one trailing empty line and joins with \n.
std::string normalize_newlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// Length in bytes of the Python whitespace (\s) run starting at `at`.
size_t whitespace_run(std::string_view text, size_t at) {
  size_t end = at;
  while (end < text.size()) {
    if (is_ascii_space(text[end])) {
      ++end;
      continue;
    }
    const auto lead = static_cast<unsigned char>(text[end]);
    if (lead < 0x80) break;
    const size_t length = (lead >> 5) == 0x6 ? 2 : (lead >> 4) == 0xE ? 3 : 4;
    const auto code_points = decode_utf8(text.substr(end, length));
    if (code_points.size() != 1 || !is_python_space(code_points[0])) break;
    end += length;
  }
  return end - at;
}

class Lexer {
 public:
  Lexer(std::string source, LexerOptions options) : source_(std::move(source)), options_(options) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < source_.size(); ++i)
      if (source_[i] == '\n') line_starts_.push_back(i + 1);
  }

  std::vector<Token> run() {
    bool line_starting = true;
    while (pos_ < source_.size()) {
      const size_t tag_at = find_tag(pos_);
      std::string text = source_.substr(pos_, tag_at - pos_);
      const size_t text_at = pos_;
      if (tag_at == source_.size()) {
        emit_text(std::move(text), text_at);
        break;
      }
      const char kind = source_[tag_at + 1];  // '{', '%' or '#'
      const char sign = tag_at + 2 < source_.size() ? source_[tag_at + 2] : '\0';
      if (sign == '-') {
        text = strip_python(text, false, true);
      } else if (sign != '+' && options_.lstrip_blocks && kind != '{') {
        // Whitespace alone between the start of the line and a block or comment tag goes.
        const size_t line_start = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((line_start > 0 || line_starting) && line_start < text.size() &&
            whitespace_run(text, line_start) == text.size() - line_start)
          text.erase(line_start);
      }
      emit_text(std::move(text), text_at);
      pos_ = tag_at + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      if (kind == '#') {
        line_starting = skip_comment(tag_at);
      } else if (kind == '%' && is_raw_block()) {
        line_starting = lex_raw_block(tag_at);
      } else {
        line_starting = lex_tag(kind == '%', tag_at);
      }
    }
    Token end;
    end.type = TokenType::End;
    end.position = position_of(source_.size());
    tokens_.push_back(end);
    return std::move(tokens_);
  }

 private:
  SourcePosition position_of(size_t offset) const {
    const auto line_it = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - 1;
    SourcePosition position;
    position.line = static_cast<int>(line_it - line_starts_.begin()) + 1;
    position.column = static_cast<int>(count_code_points(
                          std::string_view(source_).substr(*line_it, offset - *line_it))) +
                      1;
    return position;
  }

  [[noreturn]] void fail(size_t offset, const std::string& message) const {
    throw Error(positioned_message(position_of(offset), message));
  }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < source_.size(); ++i)
      if (source_[i] == '{' &&
          (source_[i + 1] == '{' || source_[i + 1] == '%' || source_[i + 1] == '#'))
        return i;
    return source_.size();
  }

  void emit_text(std::string text, size_t offset) {
    if (text.empty()) return;
    Token token;
    token.type = TokenType::Text;
    token.text = std::move(text);
    token.position = position_of(offset);
    tokens_.push_back(std::move(token));
  }

  void emit(TokenType type, std::string text, size_t offset) {
    Token token;
    token.type = type;
    token.text = std::move(text);
    token.position = position_of(offset);
    tokens_.push_back(std::move(token));
  }

  // After a closing tag: `-` strips all following whitespace, otherwise trim_blocks drops one
  // newline after a block or comment. Returns whether the consumed text ended a line.
  bool after_tag_end(char sign, bool trims_newline) {
    const size_t start = pos_;
    if (sign == '-') {
      pos_ += whitespace_run(source_, pos_);
    } else if (sign != '+' && trims_newline && options_.trim_blocks && pos_ < source_.size() &&
               source_[pos_] == '\n') {
      ++pos_;
    }
    if (pos_ > start) return source_[pos_ - 1] == '\n';
    return false;
  }

  bool skip_comment(size_t tag_at) {
    const size_t end = source_.find("#}", pos_);
    if (end == std::string::npos) fail(tag_at, "unclosed comment: '{#' without '#}'");
    const char sign = end > pos_ && source_[end - 1] == '-'   ? '-'
                      : end > pos_ && source_[end - 1] == '+' ? '+'
                                                              : '\0';
    pos_ = end + 2;
    const bool consumed_newline = after_tag_end(sign, true);
    return consumed_newline || source_[pos_ - 1] == '\n';
  }

  bool is_raw_block() const {
    size_t at = pos_ + whitespace_run(source_, pos_);
    if (source_.compare(at, 3, "raw") != 0) return false;
    at += 3;
    return at < source_.size() &&
           (is_ascii_space(source_[at]) || source_[at] == '-' || source_[at] == '%');
  }

  bool lex_raw_block(size_t tag_at) {
    pos_ += whitespace_run(source_, pos_) + 3;
    pos_ += whitespace_run(source_, pos_);
    char sign = '\0';
    if (source_[pos_] == '-' || source_[pos_] == '+') sign = source_[pos_++];
    if (source_.compare(pos_, 2, "%}") != 0) fail(tag_at, "expected '%}' after 'raw'");
    pos_ += 2;
    after_tag_end(sign, true);
    for (size_t search = pos_;;) {
      const size_t open = source_.find("{%", search);
      if (open == std::string::npos) fail(tag_at, "unclosed 'raw' block: no '{% endraw %}'");
      size_t at = open + 2;
      const char open_sign = source_[at] == '-' || source_[at] == '+' ? source_[at++] : '\0';
      at += whitespace_run(source_, at);
      if (source_.compare(at, 6, "endraw") != 0) {
        search = open + 2;
        continue;
      }
      at += 6 + whitespace_run(source_, at + 6);
      char close_sign = '\0';
      if (source_[at] == '-' || source_[at] == '+') close_sign = source_[at++];
      if (source_.compare(at, 2, "%}") != 0) fail(open, "expected '%}' after 'endraw'");
      std::string body = source_.substr(pos_, open - pos_);
      if (open_sign == '-') body = strip_python(body, false, true);
      emit_text(std::move(body), pos_);
      pos_ = at + 2;
      return after_tag_end(close_sign, true);
    }
  }

  // Lexes the inside of {{ ... }} or {% ... %}; returns whether the closing consumed a newline.
  bool lex_tag(bool is_block, size_t tag_at) {
    emit(is_block ? TokenType::BlockBegin : TokenType::VariableBegin, is_block ? "{%" : "{{",
         tag_at);
    std::vector<char> open_brackets;
    const char* closer = is_block ? "%}" : "}}";
    while (true) {
      pos_ += whitespace_run(source_, pos_);
      if (pos_ >= source_.size())
        fail(tag_at, std::string("unclosed tag: '") + (is_block ? "{%" : "{{") + "' without '" +
                         closer + "'");
      if (open_brackets.empty()) {
        char sign = '\0';
        size_t at = pos_;
        if (source_[at] == '-' || (is_block && source_[at] == '+')) sign = source_[at++];
        if (source_.compare(at, 2, closer) == 0) {
          emit(is_block ? TokenType::BlockEnd : TokenType::VariableEnd, closer, pos_);
          pos_ = at + 2;
          return after_tag_end(sign, is_block);
        }
      }
      const char c = source_[pos_];
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        size_t end = pos_;
        while (end < source_.size() &&
               (std::isalnum(static_cast<unsigned char>(source_[end])) || source_[end] == '_'))
          ++end;
        emit(TokenType::Name, source_.substr(pos_, end - pos_), pos_);
        pos_ = end;
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        lex_number();
      } else if (c == '\'' || c == '"') {
        lex_string();
      } else {
        lex_operator(open_brackets);
      }
    }
  }

  std::string digits_with_underscores(size_t& at) const {
    std::string digits;
    while (at < source_.size() &&
           (std::isdigit(static_cast<unsigned char>(source_[at])) ||
            (source_[at] == '_' && at + 1 < source_.size() &&
             std::isdigit(static_cast<unsigned char>(source_[at + 1])) && !digits.empty()))) {
      if (source_[at] != '_') digits += source_[at];
      ++at;
    }
    return digits;
  }

  void lex_number() {
    const size_t start = pos_;
    size_t at = pos_;
    std::string number = digits_with_underscores(at);
    bool is_float = false;
    // After a dot (`items.0.1`) a number is an attribute index, never a float.
    const bool after_dot = start > 0 && source_[start - 1] == '.';
    if (!after_dot && at + 1 < source_.size() && source_[at] == '.' &&
        std::isdigit(static_cast<unsigned char>(source_[at + 1]))) {
      ++at;
      number += '.' + digits_with_underscores(at);
      is_float = true;
    }
    if (!after_dot && at < source_.size() && (source_[at] == 'e' || source_[at] == 'E')) {
      size_t exponent_at = at + 1;
      std::string exponent = "e";
      if (exponent_at < source_.size() &&
          (source_[exponent_at] == '+' || source_[exponent_at] == '-'))
        exponent += source_[exponent_at++];
      const std::string exponent_digits = digits_with_underscores(exponent_at);
      if (!exponent_digits.empty()) {
        number += exponent + exponent_digits;
        at = exponent_at;
        is_float = true;
      }
    }
    Token token;
    token.position = position_of(start);
    token.text = source_.substr(start, at - start);
    if (is_float) {
      token.type = TokenType::Float;
      token.floating = std::strtod(number.c_str(), nullptr);
    } else {
      token.type = TokenType::Integer;
      errno = 0;
      const long long value = std::strtoll(number.c_str(), nullptr, 10);
      if (errno == ERANGE) fail(start, "integer literal " + number + " does not fit in 64 bits");
      token.integer = value;
    }
    tokens_.push_back(std::move(token));
    pos_ = at;
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python's unicode-escape decoding of a string literal; unknown escapes keep the backslash.
  void lex_string() {
    const size_t start = pos_;
    const char quote = source_[pos_++];
    std::string value;
    while (true) {
      if (pos_ >= source_.size()) fail(start, "unclosed string literal");
      const char c = source_[pos_];
      if (c == quote) {
        ++pos_;
        break;
      }
      if (c != '\\') {
        value += c;
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= source_.size()) fail(start, "unclosed string literal");
      const char escaped = source_[pos_ + 1];
      pos_ += 2;
      switch (escaped) {
        case '\n':
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        case 'a':
          value += '\a';
          break;
        case 'b':
          value += '\b';
          break;
        case 'f':
          value += '\f';
          break;
        case 'n':
          value += '\n';
          break;
        case 'r':
          value += '\r';
          break;
        case 't':
          value += '\t';
          break;
        case 'v':
          value += '\v';
          break;
        case 'x':
        case 'u':
        case 'U': {
          const int length = escaped == 'x' ? 2 : escaped == 'u' ? 4 : 8;
          char32_t code_point = 0;
          for (int k = 0; k < length; ++k) {
            const int digit = pos_ + k < source_.size() ? hex_value(source_[pos_ + k]) : -1;
            if (digit < 0)
              fail(start, std::string("malformed \\") + escaped + " escape in string literal");
            code_point = code_point * 16 + digit;
          }
          if (code_point > 0x10FFFF) fail(start, "\\U escape beyond U+10FFFF in string literal");
          pos_ += length;
          append_utf8(value, code_point);
          break;
        }
        case 'N':
          fail(start, "\\N{...} escapes in string literals are not supported");
        default:
          if (escaped >= '0' && escaped <= '7') {
            char32_t code_point = escaped - '0';
            for (int k = 0;
                 k < 2 && pos_ < source_.size() && source_[pos_] >= '0' && source_[pos_] <= '7';
                 ++k)
              code_point = code_point * 8 + (source_[pos_++] - '0');
            append_utf8(value, code_point);
          } else {
            value += '\\';
            value += escaped;
          }
      }
    }
    emit(TokenType::String, std::move(value), start);
  }

  void lex_operator(std::vector<char>& open_brackets) {
    static const char* const kOperators[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                             "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                             "]",  "{",  "}",  ",",  ".",  ":",  "|", ";"};
    for (const char* op : kOperators) {
      const size_t length = std::strlen(op);
      if (source_.compare(pos_, length, op) != 0) continue;
      const char c = op[0];
      if (length == 1 && (c == '(' || c == '[' || c == '{')) {
        open_brackets.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
      } else if (length == 1 && (c == ')' || c == ']' || c == '}')) {
        if (open_brackets.empty()) fail(pos_, std::string("unexpected '") + c + "'");
        if (open_brackets.back() != c)
          fail(pos_,
               std::string("unexpected '") + c + "', expected '" + open_brackets.back() + "'");
        open_brackets.pop_back();
      }
      emit(TokenType::Operator, op, pos_);
      pos_ += length;
      return;
    }
    const auto code_points = decode_utf8(std::string_view(source_).substr(pos_, 4));
    std::string shown;
    append_utf8(shown, code_points.empty() ? U'?' : code_points[0]);
    fail(pos_, "unexpected character '" + shown + "' in tag");
  }

  std::string source_;
  LexerOptions options_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> tokenize(std::string_view source, LexerOptions options) {
  return Lexer(normalize_newlines(source), options).run();
}

}  // namespace dsv3::jinja
