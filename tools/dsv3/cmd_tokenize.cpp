// Placeholder until the tokenizer lands; replaced by the real commands.
#include "commands.h"
#include "util/error.h"

namespace dsv3::cli {
int run_tokenize(const CommandArgs&) { throw Error("tokenize: not built yet"); }
int run_detokenize(const CommandArgs&) { throw Error("detokenize: not built yet"); }
}  // namespace dsv3::cli
