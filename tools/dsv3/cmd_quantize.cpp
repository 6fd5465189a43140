// dsv3 quantize -m IN_DIR -o OUT_DIR --type q8|q4 [--pure] [--keep PART[,PART...]] [--threads T]
// Rewrites a checkpoint with its linear weights block-quantized (io/quantize_checkpoint.h).
#include <chrono>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "io/quantize_checkpoint.h"
#include "sampling_flags.h"
#include "util/error.h"

namespace dsv3::cli {

int run_quantize(const CommandArgs& argv) {
  Args args(argv, {"--model", "--out", "--type", "--keep", "--threads"}, {"--pure", "--help"},
            {{"-m", "--model"}, {"-o", "--out"}});
  if (args.has("--help")) {
    std::fprintf(stderr,
                 "usage: dsv3 quantize -m IN_DIR -o OUT_DIR --type q8|q4 [--pure] "
                 "[--keep PART[,PART...]] [--threads T]\n"
                 "  q8: int8 per 32 columns with a float16 scale (1.06 bytes per weight)\n"
                 "  q4: int4 per 32 columns with a float16 scale (0.56 bytes per weight), the\n"
                 "      shared experts and dense layers' MLPs in q8 (--pure: those in q4 too)\n"
                 "  embeddings, norms, the MoE router and biases keep their precision, and so\n"
                 "  does every tensor whose name contains a --keep PART (e.g. self_attn,lm_head)\n");
    return 0;
  }
  const std::string in_dir = args.require("--model");
  const std::string out_dir = args.require("--out");
  const std::string type = args.require("--type");
  if (type != "q8" && type != "q4") throw Error("--type must be q8 or q4, got \"" + type + "\"");
  QuantizeOptions options;
  options.format = type == "q8" ? DType::Q8 : DType::Q4;
  options.pure = args.has("--pure");
  std::vector<std::string>& keep = options.keep;
  if (args.has("--keep")) {
    const std::string list = args.get("--keep");
    for (size_t begin = 0; begin <= list.size();) {
      const size_t end = std::min(list.find(',', begin), list.size());
      if (end == begin) throw Error("--keep: empty name part in \"" + list + "\"");
      keep.push_back(list.substr(begin, end - begin));
      begin = end + 1;
    }
  }
  apply_thread_flag(args);
  const auto start = std::chrono::steady_clock::now();
  const QuantizeSummary summary =
      quantize_checkpoint(in_dir, out_dir, options);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::fprintf(stderr,
               "wrote %s checkpoint to %s: %lld tensors quantized, %lld kept, %.1f MB -> %.1f MB "
               "in %lld file(s), %.1f s\n",
               type.c_str(), out_dir.c_str(), (long long)summary.quantized_tensors,
               (long long)summary.kept_tensors, summary.input_bytes / 1e6, summary.output_bytes / 1e6,
               (long long)summary.shards, seconds);
  return 0;
}

}  // namespace dsv3::cli
