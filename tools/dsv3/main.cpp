// dsv3: DeepSeek-V3 on the CPU. Dispatches to the sub-commands; turns every error into one line
// on stderr and a non-zero exit code.
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "util/error.h"

namespace {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const dsv3::cli::CommandArgs&);
};

const Command kCommands[] = {
    {"make-tiny", "write a random checkpoint in Hugging Face layout", dsv3::cli::run_make_tiny},
    {"logits", "compute logits for token ids, write them as .npy", dsv3::cli::run_logits},
    {"classify", "sequence-classification logits and label for a text", dsv3::cli::run_classify},
    {"perplexity", "perplexity of a text file with a sliding window", dsv3::cli::run_perplexity},
    {"tokenize", "text or chat messages -> token ids", dsv3::cli::run_tokenize},
    {"detokenize", "token ids -> text", dsv3::cli::run_detokenize},
    {"generate", "generate text after a prompt (streamed)", dsv3::cli::run_generate},
    {"chat", "interactive multi-turn chat", dsv3::cli::run_chat},
    {"serve", "OpenAI-compatible HTTP server with continuous batching", dsv3::cli::run_serve},
    {"bench", "prefill/decode speed against the machine's roofline", dsv3::cli::run_bench},
    {"quantize", "rewrite a checkpoint with q8 or q4 linear weights", dsv3::cli::run_quantize},
    {"quant-accuracy", "next-token KL and top-1 agreement of models vs a reference",
     dsv3::cli::run_quant_accuracy},
};

void print_usage() {
  std::fprintf(stderr, "usage: dsv3 COMMAND [flags]\n\ncommands:\n");
  for (const auto& command : kCommands)
    std::fprintf(stderr, "  %-12s %s\n", command.name, command.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  const std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& command : kCommands) {
    if (name != command.name) continue;
    try {
      return command.run(args);
    } catch (const dsv3::Error& error) {
      std::fprintf(stderr, "dsv3 %s: error: %s\n", name.c_str(), error.what());
      return 1;
    } catch (const std::bad_alloc&) {
      std::fprintf(stderr, "dsv3 %s: error: out of memory\n", name.c_str());
      return 1;
    } catch (const std::exception& error) {
      std::fprintf(stderr, "dsv3 %s: error: %s\n", name.c_str(), error.what());
      return 1;
    }
  }
  std::fprintf(stderr, "dsv3: unknown command \"%s\"\n", name.c_str());
  print_usage();
  return 2;
}
