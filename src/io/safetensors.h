// safetensors files (https://github.com/huggingface/safetensors format): memory-mapped, with the
// header validated completely before any tensor is handed out, and sharded checkpoints through
// model.safetensors.index.json. Tensors are views into the mapping (or into a copy on huge pages,
// see io/file_memory.h): nothing is copied per tensor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tensor/dtype.h"
#include "tensor/weight_matrix.h"

namespace dsv3 {

struct TensorEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;  // inside the file mapping, valid while the file is open
  size_t nbytes = 0;
  // The same bytes, writable, when they are this process's own copy of the file
  // (io/file_memory.h); null in a mapping of the file.
  std::byte* private_copy = nullptr;
  // How a matrix's elements lie in the bytes: kRowBlocks once a model load regrouped them in the
  // private copy (model/weights.cpp), so that a later load of the same checkpoint reads them so.
  mutable WeightLayout layout = WeightLayout::kRows;
  std::string file;  // path of the file that holds it (for error messages)

  int64_t numel() const;
  std::string shape_string() const;  // "[129280, 7168]"
};

// One memory-mapped .safetensors file. open() validates: file at least 8 bytes, header length
// inside the file, header valid JSON object, every entry with known dtype, integer shape and
// [begin, end) offsets inside the data section, end - begin == numel * dtype size, no two
// tensors overlapping. Any violation throws dsv3::Error naming the file and the tensor.
class SafetensorsFile {
 public:
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorEntry>& tensors() const { return tensors_; }
  const TensorEntry* find(std::string_view name) const;  // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  std::vector<TensorEntry> tensors_;                          // in file order (by data offset)
  std::map<std::string, size_t, std::less<>> index_by_name_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
};

// A checkpoint directory: model.safetensors, or model.safetensors.index.json naming shards
// (every shard it names must exist and hold the tensors the index says it holds).
class Checkpoint {
 public:
  static Checkpoint open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  const TensorEntry* find(std::string_view name) const;  // nullptr when absent
  // The tensor, which must exist with exactly this shape; otherwise throws
  // "DIR: tensor NAME is missing" or "DIR: tensor NAME has shape [..], expected [..]".
  const TensorEntry& require(std::string_view name, const std::vector<int64_t>& shape) const;
  std::vector<std::string> names() const;
  // Total bytes of tensor data over all shards.
  size_t total_bytes() const;

 private:
  std::string dir_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorEntry*, std::less<>> by_name_;
};

// Writing (make-tiny, quantize): one file, header keys in the order given, data 8-byte aligned.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  std::vector<std::byte> bytes;  // exactly numel * dtype size
};
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace dsv3
