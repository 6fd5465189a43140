#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "io/file_memory.h"
#include "util/error.h"

namespace dsv3 {

namespace {

using nlohmann::json;

// A header bigger than this is not a header but an attack or a corrupted length: the real
// DeepSeek-V3 shards have headers of a few hundred kilobytes.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// The file offset the writer starts the data section at a multiple of.
constexpr uint64_t kDataAlignment = 64;

const char* kIndexFileName = "model.safetensors.index.json";
const char* kSingleFileName = "model.safetensors";

// Names come from the file: quote and escape them so an error message stays one line.
std::string json_quoted(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shape_to_string(const std::vector<int64_t>& shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + "]";
}

// nlohmann's messages may quote the offending input; keep them on one line.
std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

// Parses JSON rejecting duplicate keys in any object (the last-one-wins rule of most parsers
// would let two entries for one tensor pass silently). Throws dsv3::Error naming `where`.
json parse_json_strict(const char* begin, const char* end, const std::string& where) {
  std::vector<std::set<std::string>> keys_per_open_object;
  auto reject_duplicates = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      keys_per_open_object.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      keys_per_open_object.pop_back();
    } else if (event == json::parse_event_t::key) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!keys_per_open_object.back().insert(key).second)
        throw Error(where + ": duplicate key " + json_quoted(key));
    }
    return true;
  };
  try {
    return json::parse(begin, end, reject_duplicates);
  } catch (const json::exception& error) {
    throw Error(where + ": not valid JSON: " + one_line(error.what()));
  }
}

const char* json_type_name(const json& value) { return value.type_name(); }

// A JSON value from a file, for an error message: scalars as written (shortened), containers by
// kind and size, since dumping them could be long or, for deep nesting, recurse without bound.
std::string describe(const json& value) {
  if (value.is_array()) return "an array of " + std::to_string(value.size()) + " elements";
  if (value.is_object()) return "an object";
  std::string text = value.dump(-1, ' ', false, json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 40) + "...";
  return text;
}

// A JSON value that must be an integer in [0, max]; `what` names it for the error message.
uint64_t non_negative_integer(const json& value, uint64_t max, const std::string& what) {
  if (value.is_number_unsigned()) {
    uint64_t number = value.get<uint64_t>();
    if (number > max) throw Error(what + " is " + std::to_string(number) + ", too large");
    return number;
  }
  if (value.is_number_integer()) {
    int64_t number = value.get<int64_t>();
    if (number < 0) throw Error(what + " is negative (" + std::to_string(number) + ")");
    if (uint64_t(number) > max) throw Error(what + " is " + std::to_string(number) + ", too large");
    return uint64_t(number);
  }
  throw Error(what + " is not an integer (" + describe(value) + ")");
}

struct ParsedOffsets {
  uint64_t begin = 0;
  uint64_t end = 0;
};

std::string offsets_string(const ParsedOffsets& offsets) {
  return "[" + std::to_string(offsets.begin) + ", " + std::to_string(offsets.end) + "]";
}

std::string read_whole_file(const std::string& path) {
  std::ifstream stream(path, std::ios::binary);
  if (!stream) throw Error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream contents;
  contents << stream.rdbuf();
  if (stream.bad()) throw Error(path + ": cannot read");
  return contents.str();
}

}  // namespace

int64_t TensorEntry::numel() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

std::string TensorEntry::shape_string() const { return shape_to_string(shape); }

// ---------------------------------------------------------------------------------------------
// Reading one file.

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(path + ": cannot open: " + std::strerror(errno));
  struct stat info;
  if (::fstat(fd, &info) != 0) {
    int saved_errno = errno;
    ::close(fd);
    throw Error(path + ": cannot stat: " + std::strerror(saved_errno));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    throw Error(path + ": not a regular file");
  }
  const uint64_t file_size = uint64_t(info.st_size);
  if (file_size < 8) {
    ::close(fd);
    throw Error(path + ": file is " + std::to_string(file_size) +
                " bytes, too short for a safetensors header (at least 8)");
  }
  // The data section starts after the header; a copy puts it on a page boundary (most files
  // pad the header to 8 bytes only, and tensors 32 bytes into a cache line cost the products
  // two line reads per vector load).
  unsigned char length_bytes[8];
  if (::pread(fd, length_bytes, 8, 0) != 8) {
    const int saved_errno = errno;
    ::close(fd);
    throw Error(path + ": cannot read the header length: " + std::strerror(saved_errno));
  }
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | length_bytes[i];
  FileBytes file_bytes;
  try {
    const uint64_t data_start = header_length <= kMaxHeaderBytes ? 8 + header_length : 0;
    file_bytes = load_file_bytes(fd, file_size, file_memory(), path, data_start);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);  // a mapping keeps the file alive; a copy does not need it
  file->mapping_ = file_bytes.mapping;  // owned from here: the destructor unmaps, also on a throw
  file->mapping_size_ = file_bytes.mapped_bytes;
  const auto* bytes = static_cast<const unsigned char*>(file_bytes.data);
  if (header_length > kMaxHeaderBytes)
    throw Error(path + ": header length " + std::to_string(header_length) +
                " is absurd (more than " + std::to_string(kMaxHeaderBytes) + " bytes)");
  if (8 + header_length > file_size)
    throw Error(path + ": header length " + std::to_string(header_length) +
                " runs past the end of the file (" + std::to_string(file_size) + " bytes)");
  const uint64_t data_start = 8 + header_length;
  const uint64_t data_size = file_size - data_start;

  const char* header_begin = reinterpret_cast<const char*>(bytes + 8);
  json header = parse_json_strict(header_begin, header_begin + header_length, path + ": header");
  if (!header.is_object())
    throw Error(path + ": header is a JSON " + json_type_name(header) + ", expected an object");

  std::vector<ParsedOffsets> offsets;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object())
        throw Error(path + ": __metadata__ is a JSON " + json_type_name(value) +
                    ", expected an object of strings");
      for (const auto& [key, text] : value.items()) {
        if (!text.is_string())
          throw Error(path + ": __metadata__ field " + json_quoted(key) + " is a JSON " +
                      json_type_name(text) + ", expected a string");
        file->metadata_[key] = text.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor " + json_quoted(name);
    if (!value.is_object())
      throw Error(where + ": entry is a JSON " + json_type_name(value) + ", expected an object");

    TensorEntry entry;
    entry.name = name;
    entry.file = path;

    auto dtype_field = value.find("dtype");
    if (dtype_field == value.end()) throw Error(where + ": missing \"dtype\"");
    if (!dtype_field->is_string())
      throw Error(where + ": \"dtype\" is a JSON " + json_type_name(*dtype_field) +
                  ", expected a string");
    const std::string& dtype_text = dtype_field->get_ref<const std::string&>();
    // parse_dtype quotes the name as is; anything but a short printable word is unknown anyway.
    if (dtype_text.size() > 32 || std::any_of(dtype_text.begin(), dtype_text.end(),
                                              [](char c) { return c < 0x20 || c > 0x7e; }))
      throw Error(where + ": unsupported dtype " + json_quoted(dtype_text));
    entry.dtype = parse_dtype(dtype_text, where);

    auto shape_field = value.find("shape");
    if (shape_field == value.end()) throw Error(where + ": missing \"shape\"");
    if (!shape_field->is_array())
      throw Error(where + ": \"shape\" is a JSON " + json_type_name(*shape_field) +
                  ", expected an array");
    // The element count times the element size must fit in 63 bits, so every product below does.
    const uint64_t max_numel = uint64_t(std::numeric_limits<int64_t>::max()) / 8;
    uint64_t numel = 1;
    for (size_t i = 0; i < shape_field->size(); ++i) {
      uint64_t dim = non_negative_integer((*shape_field)[i], max_numel,
                                          where + ": shape element " + std::to_string(i));
      entry.shape.push_back(int64_t(dim));
    }
    for (int64_t dim : entry.shape) {
      if (dim != 0 && numel > max_numel / uint64_t(dim))
        throw Error(where + ": shape " + entry.shape_string() + " has too many elements");
      numel *= uint64_t(dim);
    }

    auto offsets_field = value.find("data_offsets");
    if (offsets_field == value.end()) throw Error(where + ": missing \"data_offsets\"");
    if (!offsets_field->is_array() || offsets_field->size() != 2)
      throw Error(where + ": \"data_offsets\" is " + describe(*offsets_field) +
                  ", expected [begin, end]");
    const uint64_t max_offset = std::numeric_limits<uint64_t>::max();
    ParsedOffsets range;
    range.begin =
        non_negative_integer((*offsets_field)[0], max_offset, where + ": data_offsets begin");
    range.end = non_negative_integer((*offsets_field)[1], max_offset, where + ": data_offsets end");
    if (range.begin > range.end)
      throw Error(where + ": data_offsets " + offsets_string(range) + " begin after they end");
    if (range.end > data_size)
      throw Error(where + ": data_offsets " + offsets_string(range) +
                  " run past the end of the data (" + std::to_string(data_size) + " bytes)");
    const uint64_t expected_bytes = numel * dtype_size(entry.dtype);
    if (range.end - range.begin != expected_bytes)
      throw Error(where + ": data_offsets " + offsets_string(range) + " hold " +
                  std::to_string(range.end - range.begin) + " bytes, but shape " +
                  entry.shape_string() + " of " + std::string(dtype_name(entry.dtype)) + " needs " +
                  std::to_string(expected_bytes));

    entry.data = reinterpret_cast<const std::byte*>(bytes + data_start + range.begin);
    if (file_bytes.private_copy) entry.private_copy = const_cast<std::byte*>(entry.data);
    entry.nbytes = size_t(expected_bytes);
    file->tensors_.push_back(std::move(entry));
    offsets.push_back(range);
  }

  // File order (by offset) is the natural order to read tensors in; it also makes overlaps
  // neighbours. Empty tensors own no bytes, so they cannot overlap anything.
  std::vector<size_t> order(file->tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (offsets[a].begin != offsets[b].begin) return offsets[a].begin < offsets[b].begin;
    return offsets[a].end < offsets[b].end;
  });
  const size_t kNone = std::numeric_limits<size_t>::max();
  size_t previous = kNone;
  for (size_t index : order) {
    if (offsets[index].begin == offsets[index].end) continue;
    if (previous != kNone && offsets[index].begin < offsets[previous].end)
      throw Error(path + ": tensors " + json_quoted(file->tensors_[previous].name) + " " +
                  offsets_string(offsets[previous]) + " and " +
                  json_quoted(file->tensors_[index].name) + " " + offsets_string(offsets[index]) +
                  " overlap");
    previous = index;
  }

  std::vector<TensorEntry> in_file_order;
  in_file_order.reserve(order.size());
  for (size_t index : order) in_file_order.push_back(std::move(file->tensors_[index]));
  file->tensors_ = std::move(in_file_order);
  for (size_t i = 0; i < file->tensors_.size(); ++i)
    file->index_by_name_.emplace(file->tensors_[i].name, i);
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_) ::munmap(mapping_, mapping_size_);
}

const TensorEntry* SafetensorsFile::find(std::string_view name) const {
  auto found = index_by_name_.find(name);
  return found == index_by_name_.end() ? nullptr : &tensors_[found->second];
}

// ---------------------------------------------------------------------------------------------
// A checkpoint directory.

Checkpoint Checkpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code status_error;
  fs::file_status dir_status = fs::status(dir, status_error);
  if (!fs::exists(dir_status)) throw Error(dir + ": checkpoint directory does not exist");
  if (!fs::is_directory(dir_status)) throw Error(dir + ": not a directory");

  Checkpoint checkpoint;
  checkpoint.dir_ = dir;
  const fs::path dir_path(dir);
  const std::string index_path = (dir_path / kIndexFileName).string();
  const std::string single_path = (dir_path / kSingleFileName).string();

  if (fs::exists(index_path, status_error)) {
    std::string index_text = read_whole_file(index_path);
    json index =
        parse_json_strict(index_text.data(), index_text.data() + index_text.size(), index_path);
    if (!index.is_object())
      throw Error(index_path + ": is a JSON " + json_type_name(index) + ", expected an object");
    auto weight_map_field = index.find("weight_map");
    if (weight_map_field == index.end()) throw Error(index_path + ": missing \"weight_map\"");
    if (!weight_map_field->is_object())
      throw Error(index_path + ": \"weight_map\" is a JSON " + json_type_name(*weight_map_field) +
                  ", expected an object");
    if (weight_map_field->empty()) throw Error(index_path + ": \"weight_map\" is empty");

    std::map<std::string, std::shared_ptr<SafetensorsFile>> shards;
    for (const auto& [tensor_name, shard_field] : weight_map_field->items()) {
      if (!shard_field.is_string())
        throw Error(index_path + ": weight_map entry " + json_quoted(tensor_name) + " is a JSON " +
                    json_type_name(shard_field) + ", expected a shard file name");
      const std::string& shard_name = shard_field.get_ref<const std::string&>();
      // The index must not reach outside the checkpoint directory.
      if (shard_name.empty() || shard_name.find('/') != std::string::npos ||
          shard_name.find("..") != std::string::npos || shard_name.find('\0') != std::string::npos)
        throw Error(index_path + ": weight_map entry " + json_quoted(tensor_name) +
                    " names shard " + json_quoted(shard_name) +
                    ", which is not a plain file name in the checkpoint directory");
      auto& shard = shards[shard_name];
      if (!shard) {
        const std::string shard_path = (dir_path / shard_name).string();
        if (!fs::exists(shard_path, status_error))
          throw Error(index_path + " names shard " + json_quoted(shard_name) +
                      " which does not exist");
        shard = SafetensorsFile::open(shard_path);
        checkpoint.files_.push_back(shard);
      }
      const TensorEntry* entry = shard->find(tensor_name);
      if (!entry)
        throw Error(index_path + ": tensor " + json_quoted(tensor_name) + " is listed in shard " +
                    json_quoted(shard_name) + ", but " + shard->path() + " does not hold it");
      checkpoint.by_name_.emplace(tensor_name, entry);
    }
    // Tensors a shard holds but the index does not list stay reachable; for names the index
    // lists, the index decides which shard's copy is used.
    for (const auto& file : checkpoint.files_)
      for (const TensorEntry& entry : file->tensors())
        checkpoint.by_name_.emplace(entry.name, &entry);
  } else if (fs::exists(single_path, status_error)) {
    auto file = std::shared_ptr<SafetensorsFile>(SafetensorsFile::open(single_path));
    checkpoint.files_.push_back(file);
    for (const TensorEntry& entry : file->tensors())
      checkpoint.by_name_.emplace(entry.name, &entry);
  } else {
    throw Error(dir + ": no " + kSingleFileName + " or " + kIndexFileName);
  }
  return checkpoint;
}

const TensorEntry* Checkpoint::find(std::string_view name) const {
  auto found = by_name_.find(name);
  return found == by_name_.end() ? nullptr : found->second;
}

const TensorEntry& Checkpoint::require(std::string_view name,
                                       const std::vector<int64_t>& shape) const {
  const TensorEntry* entry = find(name);
  if (!entry) throw Error(dir_ + ": tensor " + std::string(name) + " is missing");
  if (entry->shape != shape)
    throw Error(dir_ + ": tensor " + std::string(name) + " has shape " + entry->shape_string() +
                ", expected " + shape_to_string(shape));
  return *entry;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> all;
  all.reserve(by_name_.size());
  for (const auto& [name, entry] : by_name_) all.push_back(name);
  return all;
}

size_t Checkpoint::total_bytes() const {
  size_t total = 0;
  for (const auto& file : files_)
    for (const TensorEntry& entry : file->tensors()) total += entry.nbytes;
  return total;
}

// ---------------------------------------------------------------------------------------------
// Writing.

namespace {

// Closes the FILE* of a file being written and removes the temporary on failure.
struct TemporaryOutput {
  std::string path;
  std::FILE* stream = nullptr;
  bool committed = false;
  ~TemporaryOutput() {
    if (stream) std::fclose(stream);
    if (!committed) std::remove(path.c_str());
  }
};

}  // namespace

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string, std::less<>> names_written;
  uint64_t offset = 0;
  for (const TensorToWrite& tensor : tensors) {
    const std::string where = path + ": tensor " + json_quoted(tensor.name);
    if (tensor.name.empty() || tensor.name == "__metadata__")
      throw Error(where + ": not a usable tensor name");
    if (!names_written.insert(tensor.name).second) throw Error(where + ": written twice");
    uint64_t expected_bytes = dtype_size(tensor.dtype);
    for (int64_t dim : tensor.shape) {
      if (dim < 0)
        throw Error(where + ": shape " + shape_to_string(tensor.shape) + " has a negative size");
      if (__builtin_mul_overflow(expected_bytes, uint64_t(dim), &expected_bytes))
        throw Error(where + ": shape " + shape_to_string(tensor.shape) + " is too large");
    }
    if (tensor.bytes.size() != expected_bytes)
      throw Error(where + ": " + std::to_string(tensor.bytes.size()) + " bytes given, but shape " +
                  shape_to_string(tensor.shape) + " of " + std::string(dtype_name(tensor.dtype)) +
                  " needs " + std::to_string(expected_bytes));
    header[tensor.name] = {{"dtype", std::string(dtype_name(tensor.dtype))},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + expected_bytes}}};
    offset += expected_bytes;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const nlohmann::json::exception& error) {
    throw Error(path + ": tensor names and metadata must be valid UTF-8 (" + error.what() + ")");
  }
  // Padding the header (with spaces, as the format allows) puts the data section at a 64-byte
  // aligned file offset: every tensor whose offset is a multiple of 64 then starts a cache line
  // where the file is mapped, and a row's vector loads do not straddle two lines.
  header_text.append((kDataAlignment - (8 + header_text.size()) % kDataAlignment) % kDataAlignment,
                     ' ');
  unsigned char length_bytes[8];
  for (int i = 0; i < 8; ++i) length_bytes[i] = uint8_t(uint64_t(header_text.size()) >> (8 * i));

  // Written next to the target and renamed, so a crash never leaves a half-written checkpoint.
  TemporaryOutput output{path + ".tmp"};
  output.stream = std::fopen(output.path.c_str(), "wb");
  if (!output.stream) throw Error(output.path + ": cannot create: " + std::strerror(errno));
  auto write = [&](const void* data, size_t size) {
    if (size && std::fwrite(data, 1, size, output.stream) != size)
      throw Error(output.path + ": cannot write: " + std::strerror(errno));
  };
  write(length_bytes, 8);
  write(header_text.data(), header_text.size());
  for (const TensorToWrite& tensor : tensors) write(tensor.bytes.data(), tensor.bytes.size());
  std::FILE* stream = output.stream;
  output.stream = nullptr;
  if (std::fclose(stream) != 0)
    throw Error(output.path + ": cannot write: " + std::strerror(errno));
  if (std::rename(output.path.c_str(), path.c_str()) != 0)
    throw Error(path + ": cannot rename " + output.path + " to it: " + std::strerror(errno));
  output.committed = true;
}

}  // namespace dsv3
