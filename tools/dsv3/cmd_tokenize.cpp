// dsv3 tokenize   -m DIR --stdin [--json] [--bos] [--batch]   text -> ids
// dsv3 tokenize   -m DIR --chat --stdin [--json] [--batch]    chat messages -> {"text", "ids"}
// dsv3 detokenize -m DIR --stdin [--json] [--batch]           {"ids", "skip_special_tokens"} ->
// text
//
// stdin is read as raw bytes, nothing stripped. With --batch stdin holds JSON Lines (tokenize:
// {"text", "add_special_tokens"}; chat and detokenize: the objects above) and one JSON result is
// written per line, in order, so thousands of cases run in one process.
#include <cstdio>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "generate/chat_prompt.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace dsv3::cli {
namespace {

std::string read_stdin_bytes() {
  std::string bytes;
  char chunk[1 << 16];
  size_t got = 0;
  while ((got = std::fread(chunk, 1, sizeof chunk, stdin)) > 0) bytes.append(chunk, got);
  if (std::ferror(stdin)) throw Error("cannot read stdin");
  return bytes;
}

void write_stdout(const std::string& text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size())
    throw Error("cannot write stdout");
}

// The JSON Lines of --batch input; blank lines are skipped, line numbers start at 1.
struct InputLine {
  size_t number;
  std::string text;
};
std::vector<InputLine> split_lines(const std::string& input) {
  std::vector<InputLine> lines;
  size_t start = 0, number = 1;
  while (start < input.size()) {
    size_t end = input.find('\n', start);
    if (end == std::string::npos) end = input.size();
    std::string line = input.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back({number, line});
    start = end + 1;
    ++number;
  }
  return lines;
}

// `Json` is nlohmann::ordered_json for chat requests: the template's `tojson` must print keys in
// the order the client wrote them, as Python does.
template <typename Json = nlohmann::json>
Json parse_object(const std::string& text, const std::string& where) {
  Json value;
  try {
    value = Json::parse(text);
  } catch (const nlohmann::json::exception& error) {
    throw Error(where + ": invalid JSON: " + error.what());
  }
  if (!value.is_object()) throw Error(where + ": expected a JSON object");
  return value;
}

template <typename Json>
bool optional_bool(const Json& object, const char* field, bool fallback, const std::string& where) {
  if (!object.contains(field) || object[field].is_null()) return fallback;
  if (!object[field].is_boolean()) throw Error(where + ": \"" + field + "\" must be true or false");
  return object[field].template get<bool>();
}

std::string ids_to_json(const std::vector<int32_t>& ids) { return nlohmann::json(ids).dump(); }

std::string ids_to_plain(const std::vector<int32_t>& ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) out += ' ';
    out += std::to_string(ids[i]);
  }
  return out;
}

// Renders chat messages with the model's chat template; `add_generation_prompt` defaults to
// false.
class ChatRenderer {
 public:
  ChatRenderer(const Tokenizer& tokenizer, const std::string& model_dir)
      : tokenizer_(tokenizer), prompt_(tokenizer, model_dir) {}

  nlohmann::ordered_json render(const nlohmann::ordered_json& request,
                                const std::string& where) const {
    const bool add_generation_prompt = optional_bool(request, "add_generation_prompt", false, where);
    const std::string text = prompt_.render(request, add_generation_prompt, where);
    nlohmann::ordered_json result;
    result["text"] = text;
    result["ids"] = tokenizer_.encode(text, false);
    return result;
  }

 private:
  const Tokenizer& tokenizer_;
  ChatPrompt prompt_;
};

const std::map<std::string, std::string> kAliases = {{"-m", "--model"}};

}  // namespace

int run_tokenize(const CommandArgs& args) {
  Args flags(args, {"--model"}, {"--stdin", "--json", "--bos", "--chat", "--batch"}, kAliases);
  if (!flags.positional().empty())
    throw Error("unexpected argument \"" + flags.positional()[0] + "\"");
  if (!flags.has("--stdin")) throw Error("give --stdin (the text is read from stdin)");
  const std::string model_dir = flags.require("--model");
  const bool json = flags.has("--json") || flags.has("--batch");
  const bool add_bos = flags.has("--bos");
  const Tokenizer tokenizer = Tokenizer::from_dir(model_dir);
  const std::string input = read_stdin_bytes();

  if (flags.has("--chat")) {
    if (add_bos) throw Error("--bos does not apply to --chat (the template adds it)");
    const ChatRenderer renderer(tokenizer, model_dir);
    if (!flags.has("--batch")) {
      const auto result =
          renderer.render(parse_object<nlohmann::ordered_json>(input, "stdin"), "stdin");
      write_stdout(json ? result.dump() + "\n" : result["text"].get<std::string>());
      return 0;
    }
    std::string out;
    for (const auto& line : split_lines(input)) {
      const std::string where = "stdin line " + std::to_string(line.number);
      out += renderer.render(parse_object<nlohmann::ordered_json>(line.text, where), where).dump() +
             "\n";
    }
    write_stdout(out);
    return 0;
  }

  if (!flags.has("--batch")) {
    const auto ids = tokenizer.encode(input, add_bos);
    write_stdout((json ? ids_to_json(ids) : ids_to_plain(ids)) + "\n");
    return 0;
  }
  std::string out;
  for (const auto& line : split_lines(input)) {
    const std::string where = "stdin line " + std::to_string(line.number);
    const nlohmann::json request = parse_object(line.text, where);
    if (!request.contains("text") || !request["text"].is_string())
      throw Error(where + ": \"text\" must be a string");
    const bool add_special = optional_bool(request, "add_special_tokens", add_bos, where);
    try {
      out += ids_to_json(tokenizer.encode(request["text"].get<std::string>(), add_special)) + "\n";
    } catch (const Error& error) {
      throw Error(where + ": " + error.what());
    }
  }
  write_stdout(out);
  return 0;
}

namespace {

std::vector<int32_t> parse_ids(const nlohmann::json& request, const std::string& where) {
  if (!request.contains("ids") || !request["ids"].is_array())
    throw Error(where + ": \"ids\" must be an array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(request["ids"].size());
  for (size_t i = 0; i < request["ids"].size(); ++i) {
    const auto& id = request["ids"][i];
    if (!id.is_number_integer() || id.get<int64_t>() < INT32_MIN || id.get<int64_t>() > INT32_MAX)
      throw Error(where + ": ids[" + std::to_string(i) + "] is not a token id: " + id.dump());
    ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
  }
  return ids;
}

std::string detokenize_one(const Tokenizer& tokenizer, const nlohmann::json& request,
                           const std::string& where) {
  const auto ids = parse_ids(request, where);
  const bool skip = optional_bool(request, "skip_special_tokens", false, where);
  try {
    return tokenizer.decode(ids, skip);
  } catch (const Error& error) {
    throw Error(where + ": " + error.what());
  }
}

}  // namespace

int run_detokenize(const CommandArgs& args) {
  Args flags(args, {"--model"}, {"--stdin", "--json", "--batch"}, kAliases);
  if (!flags.positional().empty())
    throw Error("unexpected argument \"" + flags.positional()[0] + "\"");
  if (!flags.has("--stdin"))
    throw Error("give --stdin (a JSON object {\"ids\": [...]} is read from stdin)");
  const bool json = flags.has("--json") || flags.has("--batch");
  const Tokenizer tokenizer = Tokenizer::from_dir(flags.require("--model"));
  const std::string input = read_stdin_bytes();
  if (!flags.has("--batch")) {
    const std::string text = detokenize_one(tokenizer, parse_object(input, "stdin"), "stdin");
    write_stdout(json ? nlohmann::json{{"text", text}}.dump() + "\n" : text);
    return 0;
  }
  std::string out;
  for (const auto& line : split_lines(input)) {
    const std::string where = "stdin line " + std::to_string(line.number);
    out +=
        nlohmann::json{{"text", detokenize_one(tokenizer, parse_object(line.text, where), where)}}
            .dump() +
        "\n";
  }
  write_stdout(out);
  return 0;
}

}  // namespace dsv3::cli
