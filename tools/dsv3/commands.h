// The dsv3 sub-commands; each parses its own flags (args.h) and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace dsv3::cli {

using CommandArgs = std::vector<std::string>;  // the arguments after the command name

int run_make_tiny(const CommandArgs& args);
int run_logits(const CommandArgs& args);
int run_classify(const CommandArgs& args);
int run_perplexity(const CommandArgs& args);
int run_tokenize(const CommandArgs& args);
int run_detokenize(const CommandArgs& args);
int run_generate(const CommandArgs& args);
int run_chat(const CommandArgs& args);
int run_serve(const CommandArgs& args);
int run_bench(const CommandArgs& args);
int run_quantize(const CommandArgs& args);
int run_quant_accuracy(const CommandArgs& args);

}  // namespace dsv3::cli
