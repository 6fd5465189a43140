// dsv3 generate -m DIR (-p TEXT | --prompt-ids 0,5,17) [--chat] [--system TEXT] [-n N]
//               [--temp T] [--top-p P] [--top-k K] [--min-p P] [--repeat-penalty R]
//               [--seed S] [--stop STR] [--ctx N] [--ids]
// dsv3 chat -m DIR [--system TEXT] [sampling flags]: an interactive multi-turn chat.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "args.h"
#include "commands.h"
#include "generate/chat_prompt.h"
#include "generate/generator.h"
#include "model/model.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

std::vector<int32_t> parse_id_list(const std::string& text);  // cmd_logits.cpp

namespace {

// Loads the model with a progress line on a terminal.
CausalLM load_model(const std::string& dir) {
  const bool show = isatty(STDERR_FILENO);
  auto progress = [show](int64_t done, int64_t total) {
    if (!show) return;
    std::fprintf(stderr, "\rloading layer %lld/%lld", (long long)done, (long long)total);
    if (done == total) std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  };
  return CausalLM(Model::from_pretrained(dir, progress));
}

// Prints streamed text; on a terminal, a reasoning model's <think>...</think> is dimmed.
class TextPrinter {
 public:
  TextPrinter() : styled_(isatty(STDOUT_FILENO)) {}
  void print(std::string_view text) {
    if (!styled_) {
      std::fwrite(text.data(), 1, text.size(), stdout);
    } else {
      while (!text.empty()) {
        const std::string_view tag = thinking_ ? "</think>" : "<think>";
        const size_t at = text.find(tag);
        std::fwrite(text.data(), 1, std::min(at, text.size()), stdout);
        if (at == std::string_view::npos) break;
        thinking_ = !thinking_;
        std::fputs(thinking_ ? "\033[2m<think>" : "</think>\033[0m", stdout);
        text.remove_prefix(at + tag.size());
      }
    }
    std::fflush(stdout);
  }
  void end() {
    if (styled_ && thinking_) std::fputs("\033[0m", stdout);
    thinking_ = false;
    std::fflush(stdout);
  }

 private:
  bool styled_;
  bool thinking_ = false;
};

nlohmann::ordered_json message(const std::string& role, const std::string& content) {
  nlohmann::ordered_json object;
  object["role"] = role;
  object["content"] = content;
  return object;
}

}  // namespace

int run_generate(const CommandArgs& argv) {
  auto value_flags = kGenerationFlags;
  value_flags.insert({"-p", "--prompt", "--prompt-ids", "--system"});
  Args args(argv, value_flags, {"--chat", "--ids", "--help", "--mmap", "--no-mmap"},
            kGenerationAliases);
  if (args.has("--help")) {
    std::fprintf(stderr,
                 "usage: dsv3 generate -m DIR (-p TEXT | --prompt-ids 0,5,17) [--chat] [--system TEXT]\n"
                 "         [-n N] [--temp T] [--top-p P] [--top-k K] [--min-p P] [--repeat-penalty R]\n"
                 "         [--seed S] [--stop STR] [--ctx N] [--threads T] [--activations f32|bf16|auto] [--attention-precision f32|bf16] [--ids]\n"
                 "         [--mmap | --no-mmap]\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  apply_thread_flag(args);
  apply_activation_flag(args);
  apply_weight_memory_flag(args);
  const bool has_text = args.has("-p") || args.has("--prompt");
  if (has_text == args.has("--prompt-ids")) throw Error("give exactly one of -p TEXT or --prompt-ids");

  CausalLM model = load_model(dir);
  GenerationConfig generation = generation_config_from_flags(args, dir, model.config());
  std::optional<Tokenizer> tokenizer;
  std::vector<int32_t> prompt;
  if (has_text) {
    tokenizer = Tokenizer::from_dir(dir);
    const std::string text = args.has("-p") ? args.get("-p") : args.get("--prompt");
    if (args.has("--chat")) {
      nlohmann::ordered_json request;
      request["messages"] = nlohmann::ordered_json::array();
      if (args.has("--system")) request["messages"].push_back(message("system", args.get("--system")));
      request["messages"].push_back(message("user", text));
      const std::string rendered = ChatPrompt(*tokenizer, dir).render(request, true, "--chat");
      prompt = tokenizer->encode(rendered, false);
    } else {
      prompt = tokenizer->encode(text, true);  // as tokenizer(text) in transformers: BOS first
    }
  } else {
    if (args.has("--chat")) throw Error("--chat needs -p TEXT");
    prompt = parse_id_list(args.get("--prompt-ids"));
    if (std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"))
      tokenizer = Tokenizer::from_dir(dir);
  }

  LatentCache cache = model.new_cache(context_from_flags(args, model.config()));
  Generator generator(model, tokenizer ? &*tokenizer : nullptr);
  const bool ids_only = args.has("--ids");
  TextPrinter printer;
  GenerationResult result = generator.generate(prompt, cache, generation, [&](int32_t, std::string_view text) {
    if (!ids_only) printer.print(text);
    return true;
  });
  if (ids_only) {
    std::printf("%s\n", nlohmann::json(result.tokens).dump().c_str());
  } else {
    printer.end();
    std::printf("\n");
    std::fflush(stdout);  // the summary on stderr comes after the text
    std::fprintf(stderr,
                 "[%zu tokens, finish: %s; cache %lld B per token per layer (latent %lld + rope key "
                 "%lld %s values), an expanded per-head cache would take %lld B]\n",
                 result.tokens.size(), finish_reason_name(result.finish),
                 (long long)cache.bytes_per_token_per_layer(), (long long)cache.latent_dim(),
                 (long long)cache.rope_dim(), cache.holds_bf16() ? "bf16" : "float",
                 (long long)cache.expanded_bytes_per_token_per_layer(model.config()));
  }
  return 0;
}

int run_chat(const CommandArgs& argv) {
  auto value_flags = kGenerationFlags;
  value_flags.insert("--system");
  Args args(argv, value_flags, {"--help"}, kGenerationAliases);
  if (args.has("--help")) {
    std::fprintf(stderr,
                 "usage: dsv3 chat -m DIR [--system TEXT] [-n N] [--temp T] [--top-p P] [--top-k K]\n"
                 "         [--seed S] [--ctx N] [--threads T] [--activations f32|bf16|auto] [--attention-precision f32|bf16]\n"
                 "One message per line; an empty line or end of input ends the chat; /reset starts over.\n");
    return 0;
  }
  const std::string dir = args.require("--model");
  apply_thread_flag(args);
  apply_activation_flag(args);
  CausalLM model = load_model(dir);
  const Tokenizer tokenizer = Tokenizer::from_dir(dir);
  const ChatPrompt chat_prompt(tokenizer, dir);
  GenerationConfig generation = generation_config_from_flags(args, dir, model.config());
  LatentCache cache = model.new_cache(context_from_flags(args, model.config()));
  Generator generator(model, &tokenizer);
  const bool interactive = isatty(STDIN_FILENO);

  nlohmann::ordered_json request;
  auto reset = [&] {
    request["messages"] = nlohmann::ordered_json::array();
    if (args.has("--system")) request["messages"].push_back(message("system", args.get("--system")));
  };
  reset();
  std::vector<int32_t> cached_tokens;  // what the cache holds, to reuse the shared prefix
  std::string line;
  TextPrinter printer;
  for (int64_t turn = 0;; ++turn) {
    if (interactive) std::fputs("\n> ", stdout), std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    if (line == "/reset") {
      reset();
      continue;
    }
    request["messages"].push_back(message("user", line));
    std::vector<int32_t> prompt = tokenizer.encode(chat_prompt.render(request, true, "chat"), false);
    // Keep the cached part the new prompt starts with; compute only the rest.
    size_t shared = 0;
    while (shared < cached_tokens.size() && shared < prompt.size() && cached_tokens[shared] == prompt[shared]) ++shared;
    cache.truncate(std::min<int64_t>(int64_t(shared), cache.length()));
    const int64_t reused = cache.length();

    GenerationConfig turn_config = generation;
    turn_config.sampling.seed = generation.sampling.seed + uint64_t(turn);
    GenerationResult result = generator.generate(prompt, cache, turn_config, [&](int32_t, std::string_view text) {
      printer.print(text);
      return true;
    });
    printer.end();
    std::printf("\n");
    if (interactive)
      std::fprintf(stderr, "[%zu tokens, %lld prompt tokens reused from the cache]\n", result.tokens.size(),
                   (long long)reused);
    cached_tokens = prompt;
    cached_tokens.insert(cached_tokens.end(), result.tokens.begin(), result.tokens.end());
    cached_tokens.resize(size_t(cache.length()));
    request["messages"].push_back(message("assistant", result.text));
  }
  return 0;
}

}  // namespace dsv3::cli
