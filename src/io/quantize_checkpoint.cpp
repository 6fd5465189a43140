#include "io/quantize_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "tensor/block_quant.h"
#include "tensor/thread_pool.h"
#include "tensor/weight_matrix.h"
#include "util/error.h"

namespace dsv3 {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// Tensor bytes per output file.
constexpr int64_t kShardBytes = int64_t(2) << 30;

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// One input tensor and what becomes of it.
struct Plan {
  const TensorEntry* tensor = nullptr;
  const TensorEntry* fp8_scale = nullptr;  // "<name>_scale_inv" of an FP8 tensor
  bool quantize = false;
  DType format = DType::Q4;  // when quantized: Q8 or Q4
  int64_t output_bytes = 0;
  int shard = 0;
};

// The input tensor as a WeightMatrix (F32/F16/BF16 as stored, FP8 with its block scales).
WeightMatrix input_matrix(const Plan& plan, const Config& config, std::vector<float>& scales,
                          std::vector<std::byte>& realigned) {
  const TensorEntry& tensor = *plan.tensor;
  WeightMatrix w;
  w.dtype = tensor.dtype;
  w.rows = tensor.shape.size() == 2 ? tensor.shape[0] : 1;
  w.cols = tensor.shape.empty() ? 1 : tensor.shape.back();
  w.data = tensor.data;
  if (reinterpret_cast<uintptr_t>(tensor.data) % dtype_size(tensor.dtype) != 0) {
    realigned.assign(tensor.data, tensor.data + tensor.nbytes);
    w.data = realigned.data();
  }
  if (tensor.dtype == DType::F8_E4M3) {
    const TensorEntry& scale = *plan.fp8_scale;
    const int64_t block_rows = config.quantization_config.block_rows;
    const int64_t block_cols = config.quantization_config.block_cols;
    const int64_t scale_rows = (w.rows + block_rows - 1) / block_rows;
    const int64_t scale_cols = (w.cols + block_cols - 1) / block_cols;
    if (scale.shape != std::vector<int64_t>{scale_rows, scale_cols})
      throw Error(scale.file + ": tensor " + scale.name + " has shape " + scale.shape_string() +
                  ", expected [" + std::to_string(scale_rows) + ", " + std::to_string(scale_cols) + "]");
    scales.resize(size_t(scale.numel()));
    for (int64_t i = 0; i < scale.numel(); ++i) {
      const std::byte* at = scale.data + i * int64_t(dtype_size(scale.dtype));
      uint32_t bits32;
      uint16_t bits16;
      switch (scale.dtype) {
        case DType::F32:
          std::memcpy(&bits32, at, 4);
          std::memcpy(&scales[i], &bits32, 4);
          break;
        case DType::BF16:
          std::memcpy(&bits16, at, 2);
          scales[i] = bf16_to_f32(bits16);
          break;
        case DType::F16:
          std::memcpy(&bits16, at, 2);
          scales[i] = f16_to_f32(bits16);
          break;
        default:
          throw Error(scale.file + ": tensor " + scale.name + " has dtype " +
                      std::string(dtype_name(scale.dtype)) + ", expected F32, F16 or BF16");
      }
    }
    w.block_scale = scales.data();
    w.block_rows = block_rows;
    w.block_cols = block_cols;
    w.scale_cols = scale_cols;
  }
  return w;
}

std::vector<std::byte> as_bytes(const void* data, size_t size) {
  const auto* begin = static_cast<const std::byte*>(data);
  return std::vector<std::byte>(begin, begin + size);
}

// The output tensors of one plan entry.
std::vector<TensorToWrite> convert(const Plan& plan, const Config& config) {
  const DType format = plan.format;
  const TensorEntry& tensor = *plan.tensor;
  if (!plan.quantize && tensor.dtype != DType::F8_E4M3)
    return {{tensor.name, tensor.dtype, tensor.shape, as_bytes(tensor.data, tensor.nbytes)}};
  std::vector<float> fp8_scales;
  std::vector<std::byte> realigned;
  const WeightMatrix w = input_matrix(plan, config, fp8_scales, realigned);
  if (!plan.quantize) {  // an FP8 tensor kept at higher precision: BF16
    std::vector<uint16_t> values(size_t(w.rows * w.cols));
    for (int64_t r = 0; r < w.rows; ++r)
      for (int64_t c = 0; c < w.cols; ++c) values[r * w.cols + c] = f32_to_bf16(w.at(r, c));
    return {{tensor.name, DType::BF16, tensor.shape, as_bytes(values.data(), values.size() * 2)}};
  }
  const int64_t row_bytes = quant_row_bytes(format, w.cols), groups = quant_groups(w.cols);
  std::vector<uint8_t> codes(size_t(w.rows * row_bytes));
  std::vector<uint16_t> scales(size_t(w.rows * groups));
  ThreadPool::global().parallel_for(w.rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(size_t(w.cols));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t c = 0; c < w.cols; ++c) row[c] = w.at(r, c);
      quantize_row(format, row.data(), w.cols, codes.data() + r * row_bytes, scales.data() + r * groups);
    }
  });
  return {{tensor.name, format == DType::Q8 ? DType::I8 : DType::U8, {w.rows, row_bytes},
           as_bytes(codes.data(), codes.size())},
          {tensor.name + "_scale", DType::F16, {w.rows, groups}, as_bytes(scales.data(), scales.size() * 2)}};
}

json quantization_config(DType format, const std::vector<std::string>& keep,
                         const std::vector<std::string>& q8_parts) {
  json not_converted = {"model.embed_tokens", "*norm*", "*.mlp.gate",
                        "*.mlp.gate.e_score_correction_bias", "score"};
  for (const std::string& part : keep) not_converted.push_back("*" + part + "*");
  json config = {{"quant_method", "dsv3"},
          {"fmt", format == DType::Q8 ? "q8" : "q4"},
          {"weight_block_size", {1, kQuantGroup}},
          {"scale_dtype", "float16"},
          {"activation_scheme", "dynamic"},
          {"modules_not_to_convert", not_converted}};
  if (!q8_parts.empty()) {
    json q8_modules = json::array();
    for (const std::string& part : q8_parts) q8_modules.push_back("*" + part + "*");
    config["q8_modules"] = q8_modules;
  }
  return config;
}

bool names_any(const std::string& name, const std::vector<std::string>& parts) {
  for (const std::string& part : parts)
    if (name.find(part) != std::string::npos) return true;
  return false;
}

void copy_other_files(const fs::path& in, const fs::path& out) {
  for (const auto& entry : fs::directory_iterator(in)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    if (ends_with(name, ".safetensors") || name == "model.safetensors.index.json" || name == "config.json")
      continue;
    fs::copy_file(entry.path(), out / name, fs::copy_options::overwrite_existing);
  }
}

}  // namespace

bool is_quantized_linear(const std::string& name, int64_t dims) {
  if (dims != 2 || !ends_with(name, ".weight")) return false;
  if (ends_with(name, "embed_tokens.weight")) return false;
  if (ends_with(name, ".mlp.gate.weight")) return false;  // the MoE router
  if (name == "score.weight") return false;
  if (name.find("norm") != std::string::npos) return false;
  return true;
}

std::vector<std::string> default_q8_parts(const Config& config) {
  std::vector<std::string> parts;
  if (config.n_shared_experts > 0) parts.push_back("mlp.shared_experts.");
  for (int64_t layer = 0; layer < std::min(config.first_k_dense_replace, config.num_hidden_layers);
       ++layer)
    parts.push_back("model.layers." + std::to_string(layer) + ".mlp.");
  return parts;
}

QuantizeSummary quantize_checkpoint(const std::string& in_dir, const std::string& out_dir,
                                    const QuantizeOptions& options) {
  const DType format = options.format;
  const std::vector<std::string>& keep = options.keep;
  if (format != DType::Q8 && format != DType::Q4) throw Error("quantize: the format must be Q8 or Q4");
  const fs::path in(in_dir), out(out_dir);
  json config_json;
  {
    std::ifstream file(in / "config.json");
    if (!file) throw Error((in / "config.json").string() + ": cannot open");
    try {
      config_json = json::parse(file);
    } catch (const json::exception& error) {
      throw Error((in / "config.json").string() + ": " + error.what());
    }
  }
  const Config config = Config::from_json(config_json, (in / "config.json").string());
  config.validate();
  if (config.is_block_quantized())
    throw Error(in_dir + ": already quantized (quant_method dsv3, fmt " + config.quantization_config.fmt + ")");
  std::error_code ignored;
  if (fs::exists(out) && fs::equivalent(in, out, ignored))
    throw Error(out_dir + ": the output directory must differ from the input");
  const Checkpoint checkpoint = Checkpoint::open(in_dir);
  // Q4's mixture: the FFNs every token reads (shared experts, dense layers) in Q8.
  const std::vector<std::string> q8_parts =
      format == DType::Q4 && !options.pure ? default_q8_parts(config) : std::vector<std::string>{};

  std::vector<Plan> plans;
  for (const std::string& name : checkpoint.names()) {
    if (ends_with(name, "_scale_inv") && config.is_fp8()) continue;  // read with its tensor
    Plan plan;
    plan.tensor = checkpoint.find(name);
    const TensorEntry& tensor = *plan.tensor;
    if (tensor.dtype == DType::F8_E4M3) {
      plan.fp8_scale = checkpoint.find(name + "_scale_inv");
      if (!config.is_fp8() || plan.fp8_scale == nullptr || tensor.shape.size() != 2)
        throw Error(tensor.file + ": FP8 tensor " + name +
                    " needs a 2-D shape, its _scale_inv and an fp8 quantization_config");
    }
    const bool float_input = tensor.dtype == DType::F32 || tensor.dtype == DType::F16 ||
                             tensor.dtype == DType::BF16 || tensor.dtype == DType::F8_E4M3;
    plan.quantize = float_input && is_quantized_linear(name, int64_t(tensor.shape.size())) &&
                    !names_any(name, keep);
    plan.format = names_any(name, q8_parts) ? DType::Q8 : format;
    if (plan.quantize) {
      plan.output_bytes = tensor.shape[0] * (quant_row_bytes(plan.format, tensor.shape[1]) +
                                             quant_groups(tensor.shape[1]) * 2);
    } else {
      plan.output_bytes = tensor.dtype == DType::F8_E4M3 ? tensor.numel() * 2 : int64_t(tensor.nbytes);
    }
    plans.push_back(plan);
  }

  QuantizeSummary summary;
  int64_t shard_bytes = 0;
  for (Plan& plan : plans) {
    if (shard_bytes > 0 && shard_bytes + plan.output_bytes > kShardBytes) {
      ++summary.shards;
      shard_bytes = 0;
    }
    plan.shard = int(summary.shards);
    shard_bytes += plan.output_bytes;
  }
  ++summary.shards;

  fs::create_directories(out);
  auto shard_name = [&](int64_t shard) {
    if (summary.shards == 1) return std::string("model.safetensors");
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05lld-of-%05lld.safetensors", (long long)shard + 1,
                  (long long)summary.shards);
    return std::string(name);
  };
  json weight_map = json::object();
  for (int64_t shard = 0; shard < summary.shards; ++shard) {
    std::vector<TensorToWrite> tensors;
    for (const Plan& plan : plans) {
      if (plan.shard != shard) continue;
      summary.input_bytes += int64_t(plan.tensor->nbytes) +
                             (plan.fp8_scale ? int64_t(plan.fp8_scale->nbytes) : 0);
      (plan.quantize ? summary.quantized_tensors : summary.kept_tensors) += 1;
      for (TensorToWrite& written : convert(plan, config)) {
        summary.output_bytes += int64_t(written.bytes.size());
        weight_map[written.name] = shard_name(shard);
        tensors.push_back(std::move(written));
      }
    }
    // Wider elements first: every tensor then starts aligned for its element type.
    std::stable_sort(tensors.begin(), tensors.end(), [](const TensorToWrite& a, const TensorToWrite& b) {
      return dtype_size(a.dtype) > dtype_size(b.dtype);
    });
    write_safetensors((out / shard_name(shard)).string(), tensors, {{"format", "pt"}});
  }
  if (summary.shards > 1) {
    json index = {{"metadata", {{"total_size", summary.output_bytes}}}, {"weight_map", weight_map}};
    std::ofstream file(out / "model.safetensors.index.json");
    file << index.dump(2) << "\n";
    if (!file) throw Error((out / "model.safetensors.index.json").string() + ": write failed");
  }
  copy_other_files(in, out);
  config_json["quantization_config"] = quantization_config(format, keep, q8_parts);
  std::ofstream file(out / "config.json");
  file << config_json.dump(2) << "\n";
  if (!file) throw Error((out / "config.json").string() + ": write failed");
  return summary;
}

}  // namespace dsv3
