// safetensors reading and writing: round trips for every dtype, sharded checkpoints, and hostile
// files that must each be refused with a dsv3::Error naming the problem (never a crash).
#include "io/file_memory.h"
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "util/error.h"

namespace dsv3 {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "dsv3_safetensors_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  // A file with exactly this header text (no padding) followed by `data_size` bytes.
  std::string write_raw(const std::string& name, const std::string& header, size_t data_size,
                        uint64_t header_length_override = UINT64_MAX) {
    uint64_t header_length =
        header_length_override == UINT64_MAX ? header.size() : header_length_override;
    std::string bytes;
    for (int i = 0; i < 8; ++i) bytes.push_back(char(header_length >> (8 * i)));
    bytes += header;
    bytes.append(data_size, '\x5a');
    return write_bytes(name, bytes);
  }

  std::string write_bytes(const std::string& name, const std::string& bytes) {
    std::string file = path(name);
    std::ofstream stream(file, std::ios::binary);
    stream.write(bytes.data(), std::streamsize(bytes.size()));
    EXPECT_TRUE(stream.good());
    return file;
  }

  std::string read_bytes(const std::string& file) {
    std::ifstream stream(file, std::ios::binary);
    std::ostringstream contents;
    contents << stream.rdbuf();
    return contents.str();
  }

  std::string dir_;
};

// The message of the dsv3::Error `action` throws, or a marker when it throws none.
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const Error& error) {
    return error.what();
  }
  return "<no error>";
}

#define EXPECT_ERROR_CONTAINS(action, fragment)                                        \
  do {                                                                                 \
    std::string message_ = error_of([&] { action; });                                  \
    EXPECT_NE(message_.find(fragment), std::string::npos)                              \
        << "message: " << message_ << "\nexpected to contain: " << (fragment);         \
    EXPECT_EQ(message_.find('\n'), std::string::npos) << "not one line: " << message_; \
  } while (0)

std::vector<std::byte> pattern_bytes(size_t count, uint8_t seed) {
  std::vector<std::byte> bytes(count);
  for (size_t i = 0; i < count; ++i) bytes[i] = std::byte(uint8_t(seed + i * 7));
  return bytes;
}

TensorToWrite make_tensor(const std::string& name, DType dtype, std::vector<int64_t> shape,
                          uint8_t seed = 1) {
  TensorToWrite tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  size_t numel = 1;
  for (int64_t dim : tensor.shape) numel *= size_t(dim);
  tensor.bytes = pattern_bytes(numel * dtype_size(dtype), seed);
  return tensor;
}

// ---------------------------------------------------------------------------------------------
// Round trips.

TEST_F(SafetensorsTest, RoundTripEveryDtype) {
  const DType all[] = {DType::F64, DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I64,
                       DType::I32, DType::I16, DType::I8,  DType::U8,   DType::BOOL};
  std::vector<TensorToWrite> tensors;
  uint8_t seed = 3;
  for (DType dtype : all) {
    // Odd sizes so that the data of later tensors starts at unaligned offsets.
    tensors.push_back(make_tensor("t." + std::string(dtype_name(dtype)), dtype, {3, 5}, seed++));
  }
  tensors.push_back(make_tensor("scalar", DType::F32, {}, seed++));
  tensors.push_back(make_tensor("empty", DType::BF16, {0}, seed++));
  tensors.push_back(make_tensor("empty2d", DType::F32, {4, 0}, seed++));
  tensors.push_back(make_tensor("z.last", DType::U8, {7}, seed++));
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "dsv3 \"test\""}};
  const std::string file = path("model.safetensors");
  write_safetensors(file, tensors, metadata);
  EXPECT_FALSE(fs::exists(file + ".tmp"));

  auto opened = SafetensorsFile::open(file);
  EXPECT_EQ(opened->path(), file);
  EXPECT_EQ(opened->metadata(), metadata);
  ASSERT_EQ(opened->tensors().size(), tensors.size());
  for (const TensorToWrite& written : tensors) {
    const TensorEntry* entry = opened->find(written.name);
    ASSERT_NE(entry, nullptr) << written.name;
    EXPECT_EQ(entry->name, written.name);
    EXPECT_EQ(entry->dtype, written.dtype) << written.name;
    EXPECT_EQ(entry->shape, written.shape) << written.name;
    EXPECT_EQ(entry->file, file);
    ASSERT_EQ(entry->nbytes, written.bytes.size()) << written.name;
    if (entry->nbytes) {
      EXPECT_EQ(std::memcmp(entry->data, written.bytes.data(), entry->nbytes), 0);
    }
  }
  EXPECT_EQ(opened->find("absent"), nullptr);
  EXPECT_EQ(opened->find("__metadata__"), nullptr);
  EXPECT_EQ(opened->find("scalar")->numel(), 1);
  EXPECT_EQ(opened->find("empty2d")->numel(), 0);
  EXPECT_EQ(opened->find("t.F32")->shape_string(), "[3, 5]");
  EXPECT_EQ(opened->find("scalar")->shape_string(), "[]");

  // The layout: header padded to a multiple of 8 (data 8-aligned), keys in the order given with
  // __metadata__ first, data contiguous in the order given and ending at the end of the file.
  const std::string bytes = read_bytes(file);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | uint8_t(bytes[i]);
  EXPECT_EQ(header_length % 8, 0u);
  const std::string header = bytes.substr(8, header_length);
  size_t previous_position = header.find("\"__metadata__\"");
  EXPECT_EQ(previous_position, 1u);
  for (const TensorToWrite& written : tensors) {
    size_t position = header.find("\"" + written.name + "\"");
    ASSERT_NE(position, std::string::npos);
    EXPECT_GT(position, previous_position) << written.name << " out of order";
    previous_position = position;
  }
  size_t data_bytes = 0;
  for (const TensorToWrite& written : tensors) data_bytes += written.bytes.size();
  EXPECT_EQ(bytes.size(), 8 + header_length + data_bytes);
  // Each tensor's data sits right after the previous one's.
  const std::byte* data_start = opened->tensors().front().data;
  size_t offset = 0;
  for (const TensorToWrite& written : tensors) {
    EXPECT_EQ(opened->find(written.name)->data - data_start, std::ptrdiff_t(offset))
        << written.name;
    offset += written.bytes.size();
  }
  // tensors() lists them in file order, which is the order written here (empty ones aside,
  // which share an offset with their neighbour).
  std::vector<std::string> listed;
  for (const TensorEntry& entry : opened->tensors())
    if (entry.nbytes) listed.push_back(entry.name);
  std::vector<std::string> written_order;
  for (const TensorToWrite& written : tensors)
    if (!written.bytes.empty()) written_order.push_back(written.name);
  EXPECT_EQ(listed, written_order);
}

TEST_F(SafetensorsTest, WriteWithoutMetadataOrTensors) {
  write_safetensors(path("empty.safetensors"), {});
  auto opened = SafetensorsFile::open(path("empty.safetensors"));
  EXPECT_TRUE(opened->tensors().empty());
  EXPECT_TRUE(opened->metadata().empty());
  EXPECT_EQ(read_bytes(path("empty.safetensors")).find("__metadata__"), std::string::npos);
}

TEST_F(SafetensorsTest, WriteRejectsBadInput) {
  auto bad_size = make_tensor("w", DType::F32, {2, 3});
  bad_size.bytes.pop_back();
  EXPECT_ERROR_CONTAINS(write_safetensors(path("a.safetensors"), {bad_size}),
                        "tensor \"w\": 23 bytes given, but shape [2, 3] of F32 needs 24");
  EXPECT_FALSE(fs::exists(path("a.safetensors")));
  EXPECT_ERROR_CONTAINS(
      write_safetensors(path("a.safetensors"),
                        {make_tensor("w", DType::F32, {1}), make_tensor("w", DType::F32, {1})}),
      "tensor \"w\": written twice");
  auto negative = make_tensor("n", DType::F32, {1});
  negative.shape = {-1};
  EXPECT_ERROR_CONTAINS(write_safetensors(path("a.safetensors"), {negative}), "negative");
  EXPECT_ERROR_CONTAINS(
      write_safetensors(path("a.safetensors"), {make_tensor("bad\xff", DType::F32, {1})}),
      "must be valid UTF-8");
  EXPECT_ERROR_CONTAINS(
      write_safetensors(path("no/such/dir/a.safetensors"), {make_tensor("w", DType::F32, {1})}),
      path("no/such/dir/a.safetensors.tmp") + ": cannot create");
}

TEST_F(SafetensorsTest, SingleFileCheckpoint) {
  write_safetensors(path("model.safetensors"),
                    {make_tensor("a", DType::BF16, {2, 3}), make_tensor("b", DType::F32, {4})});
  Checkpoint checkpoint = Checkpoint::open(dir_);
  EXPECT_EQ(checkpoint.dir(), dir_);
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(checkpoint.total_bytes(), 12u + 16u);
  EXPECT_EQ(checkpoint.require("a", {2, 3}).dtype, DType::BF16);
  EXPECT_EQ(checkpoint.find("c"), nullptr);
  EXPECT_ERROR_CONTAINS(checkpoint.require("c", {1}), dir_ + ": tensor c is missing");
  EXPECT_ERROR_CONTAINS(checkpoint.require("a", {3, 2}),
                        dir_ + ": tensor a has shape [2, 3], expected [3, 2]");
  EXPECT_ERROR_CONTAINS(checkpoint.require("b", {4, 1}), "has shape [4], expected [4, 1]");
  // A copy shares the mappings; the views stay valid after the original is gone.
  Checkpoint copy = checkpoint;
  checkpoint = Checkpoint();
  EXPECT_EQ(std::memcmp(copy.require("b", {4}).data, pattern_bytes(16, 1).data(), 16), 0);
}

TEST_F(SafetensorsTest, MappedAndCopiedFilesHoldTheSameBytes) {
  // Mapped in place, copied onto huge pages (--no-mmap), and auto (a copy for a file this
  // small): the same tensors with the same bytes, readable after the checkpoint is copied.
  const FileMemory previous = file_memory();
  const std::vector<TensorToWrite> tensors = {make_tensor("a", DType::BF16, {3, 5}),
                                              make_tensor("b", DType::F32, {1000}),
                                              make_tensor("c", DType::I8, {7})};
  write_safetensors(path("model.safetensors"), tensors);
  for (FileMemory memory : {FileMemory::kMapped, FileMemory::kHugePageCopy, FileMemory::kAuto}) {
    set_file_memory(memory);
    EXPECT_EQ(file_memory(), memory);
    Checkpoint checkpoint = Checkpoint::open(dir_);
    Checkpoint copy = checkpoint;
    checkpoint = Checkpoint();
    for (const TensorToWrite& tensor : tensors) {
      const TensorEntry& entry = copy.require(tensor.name, tensor.shape);
      ASSERT_EQ(entry.nbytes, tensor.bytes.size());
      EXPECT_EQ(std::memcmp(entry.data, tensor.bytes.data(), entry.nbytes), 0)
          << tensor.name << " memory " << int(memory);
    }
  }
  set_file_memory(previous);
}

TEST_F(SafetensorsTest, DataStartsOnACacheLine) {
  // Our writer pads the header so that the data section starts at a multiple of 64 bytes.
  write_safetensors(path("written.safetensors"), {make_tensor("a", DType::BF16, {3, 5})});
  const std::string written = read_bytes(path("written.safetensors"));
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | uint8_t(written[size_t(i)]);
  EXPECT_EQ((8 + header_length) % 64, 0u);

  // A file whose data section starts 40 bytes into a line (a header padded to 8 bytes only, as
  // many checkpoints are), 5 MB so that its copy spans several huge pages: copied, its tensors
  // start on cache lines, with their bytes intact at either end.
  const int64_t rows = 1280, cols = 1024;
  const std::vector<std::byte> big = pattern_bytes(size_t(rows * cols * 2), 3);
  const std::vector<std::byte> small = pattern_bytes(64, 9);
  std::string header = R"({"big":{"dtype":"BF16","shape":[1280,1024],"data_offsets":[0,2621440]},)"
                       R"("small":{"dtype":"U8","shape":[64],"data_offsets":[2621440,2621504]}})";
  while ((8 + header.size()) % 64 != 40) header += ' ';
  std::string bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(char(uint64_t(header.size()) >> (8 * i)));
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(big.data()), big.size());
  bytes.append(reinterpret_cast<const char*>(small.data()), small.size());
  bytes.append(2 << 20, '\x5a');  // more than the tensors use
  const std::string file = write_bytes("eight.safetensors", bytes);
  const FileMemory previous = file_memory();
  set_file_memory(FileMemory::kHugePageCopy);
  const std::unique_ptr<SafetensorsFile> copied = SafetensorsFile::open(file);
  set_file_memory(previous);
  const TensorEntry* big_entry = copied->find("big");
  const TensorEntry* small_entry = copied->find("small");
  ASSERT_NE(big_entry, nullptr);
  ASSERT_NE(small_entry, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big_entry->data) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small_entry->data) % 64, 0u);
  EXPECT_EQ(std::memcmp(big_entry->data, big.data(), big.size()), 0);
  EXPECT_EQ(std::memcmp(small_entry->data, small.data(), small.size()), 0);
}

void write_text(const std::string& file, const std::string& text) {
  std::ofstream stream(file, std::ios::binary);
  stream << text;
}

TEST_F(SafetensorsTest, ShardedCheckpoint) {
  write_safetensors(path("model-00001-of-00002.safetensors"),
                    {make_tensor("embed", DType::BF16, {8, 4}, 10),
                     make_tensor("layers.0.w", DType::F8_E4M3, {4, 4}, 20)});
  write_safetensors(
      path("model-00002-of-00002.safetensors"),
      {make_tensor("layers.0.scale", DType::F32, {1, 1}, 30),
       make_tensor("head", DType::BF16, {8, 4}, 40), make_tensor("unlisted", DType::I32, {2}, 50)});
  // Also a single-file model, which the index must take precedence over.
  write_safetensors(path("model.safetensors"), {make_tensor("stale", DType::F32, {1})});
  write_text(path("model.safetensors.index.json"), R"({
    "metadata": {"total_size": 184},
    "weight_map": {
      "embed": "model-00001-of-00002.safetensors",
      "layers.0.w": "model-00001-of-00002.safetensors",
      "layers.0.scale": "model-00002-of-00002.safetensors",
      "head": "model-00002-of-00002.safetensors"
    }
  })");
  Checkpoint checkpoint = Checkpoint::open(dir_);
  EXPECT_EQ(checkpoint.names(), (std::vector<std::string>{"embed", "head", "layers.0.scale",
                                                          "layers.0.w", "unlisted"}));
  EXPECT_EQ(checkpoint.total_bytes(), 64u + 16u + 4u + 64u + 8u);
  EXPECT_EQ(checkpoint.find("stale"), nullptr);
  const TensorEntry& head = checkpoint.require("head", {8, 4});
  EXPECT_EQ(head.file, path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(std::memcmp(head.data, pattern_bytes(64, 40).data(), 64), 0);
  const TensorEntry& weight = checkpoint.require("layers.0.w", {4, 4});
  EXPECT_EQ(weight.dtype, DType::F8_E4M3);
  EXPECT_EQ(weight.file, path("model-00001-of-00002.safetensors"));
  EXPECT_EQ(std::memcmp(weight.data, pattern_bytes(16, 20).data(), 16), 0);
  ASSERT_NE(checkpoint.find("unlisted"), nullptr);
  EXPECT_EQ(checkpoint.find("unlisted")->dtype, DType::I32);
}

TEST_F(SafetensorsTest, IndexDecidesBetweenDuplicateNames) {
  write_safetensors(path("two.safetensors"),
                    {make_tensor("w", DType::F32, {1}, 2), make_tensor("x", DType::F32, {1}, 3)});
  write_text(path("model.safetensors.index.json"),
             R"({"weight_map": {"w": "two.safetensors", "x": "two.safetensors",
                                "y": "one.safetensors"}})");
  write_safetensors(path("one.safetensors"),
                    {make_tensor("w", DType::F32, {1}, 1), make_tensor("y", DType::F32, {1}, 4)});
  Checkpoint checkpoint = Checkpoint::open(dir_);
  EXPECT_EQ(checkpoint.require("w", {1}).file, path("two.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// Hostile single files.

TEST_F(SafetensorsTest, EmptyFile) {
  std::string file = write_bytes("x.safetensors", "");
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": file is 0 bytes, too short for a safetensors header");
}

TEST_F(SafetensorsTest, FiveByteFile) {
  std::string file = write_bytes("x.safetensors", "abcde");
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "file is 5 bytes, too short");
}

TEST_F(SafetensorsTest, MissingFileAndDirectory) {
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(path("nope.safetensors")),
                        path("nope.safetensors") + ": cannot open: No such file");
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(dir_), dir_ + ": not a regular file");
}

TEST_F(SafetensorsTest, HeaderLengthPastEndOfFile) {
  std::string file = write_raw("x.safetensors", "{}", 0, 100);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": header length 100 runs past the end of the file (10 bytes)");
}

TEST_F(SafetensorsTest, HeaderLengthHuge) {
  std::string file = write_raw("x.safetensors", "{}", 0, UINT64_MAX - 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "header length 18446744073709551614 is absurd");
  file = write_raw("y.safetensors", "{}", 0, 1ull << 40);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "is absurd");
}

TEST_F(SafetensorsTest, HeaderNotJson) {
  std::string file = write_raw("x.safetensors", "{\"a\": [1, 2", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), file + ": header: not valid JSON");
  file = write_raw("y.safetensors", std::string("{\"a\xff\": {}}"), 0);  // invalid UTF-8
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "not valid JSON");
  file = write_raw("z.safetensors", std::string("{}\n\nxyz"), 0);  // trailing garbage
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "not valid JSON");
  file = write_raw("w.safetensors", std::string(8, '\0'), 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "not valid JSON");
}

TEST_F(SafetensorsTest, HeaderJsonArray) {
  std::string file = write_raw("x.safetensors", "[1, 2, 3]", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": header is a JSON array, expected an object");
}

TEST_F(SafetensorsTest, DuplicateKeys) {
  std::string file = write_raw("x.safetensors",
                               R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                               R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                               2);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "duplicate key \"w\"");
  file = write_raw(
      "y.safetensors",
      R"({"w": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "duplicate key \"dtype\"");
}

TEST_F(SafetensorsTest, BadMetadata) {
  std::string file = write_raw("x.safetensors", R"({"__metadata__": {"format": 1}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "__metadata__ field \"format\" is a JSON number, expected a string");
  file = write_raw("y.safetensors", R"({"__metadata__": "pt"})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "__metadata__ is a JSON string");
}

TEST_F(SafetensorsTest, UnknownDtype) {
  std::string file = write_raw(
      "x.safetensors", R"({"w": {"dtype": "F7", "shape": [1], "data_offsets": [0, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": tensor \"w\": unsupported dtype \"F7\"");
  file =
      write_raw("y.safetensors", R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"w\": \"dtype\" is a JSON number");
}

TEST_F(SafetensorsTest, MissingFieldsAndBadEntries) {
  std::string file =
      write_raw("a.safetensors", R"({"w": {"shape": [1], "data_offsets": [0, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"w\": missing \"dtype\"");
  file = write_raw("b.safetensors", R"({"w": {"dtype": "U8", "data_offsets": [0, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"w\": missing \"shape\"");
  file = write_raw("c.safetensors", R"({"w": {"dtype": "U8", "shape": [1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"w\": missing \"data_offsets\"");
  file = write_raw("d.safetensors", R"({"w": [1, 2]})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"w\": entry is a JSON array");
  file = write_raw("e.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "\"data_offsets\" is an array of 3 elements, expected [begin, end]");
  file = write_raw("f.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1.0]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "data_offsets end is not an integer");
  file = write_raw("g.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [-1, 1]}})", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "data_offsets begin is negative");
  // Names and dtypes with a newline are escaped, keeping the message on one line.
  file = write_raw("i.safetensors",
                   "{\"w\": {\"dtype\": \"F\\n7\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "unsupported dtype \"F\\n7\"");
  file = write_raw("h.safetensors", "{\"bad\\nname\": {\"dtype\": \"X\"}}", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "tensor \"bad\\nname\": unsupported dtype");
}

TEST_F(SafetensorsTest, BadShapes) {
  std::string file = write_raw(
      "a.safetensors", R"({"w": {"dtype": "U8", "shape": [2, -1], "data_offsets": [0, 0]}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": tensor \"w\": shape element 1 is negative (-1)");
  file = write_raw("b.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 0]}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "shape element 0 is not an integer (2.5)");
  file = write_raw("c.safetensors",
                   R"({"w": {"dtype": "U8", "shape": ["3"], "data_offsets": [0, 3]}})", 3);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "shape element 0 is not an integer");
  file = write_raw("d.safetensors", R"({"w": {"dtype": "U8", "shape": 3, "data_offsets": [0, 3]}})",
                   3);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "\"shape\" is a JSON number, expected an array");
  // Products that overflow 64 bits must not wrap around to a small, "valid" size.
  file = write_raw(
      "e.safetensors",
      R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 4], "data_offsets": [0, 0]}})",
      0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "has too many elements");
  file = write_raw(
      "f.safetensors",
      R"({"w": {"dtype": "U8", "shape": [18446744073709551615], "data_offsets": [0, 0]}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "shape element 0 is 18446744073709551615, too large");
  // 2^62 elements of 4 bytes would wrap to 0 bytes in 64-bit arithmetic.
  file = write_raw(
      "g.safetensors",
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 0]}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "too large");
}

// Deeply nested values must neither crash the parser nor the error message.
TEST_F(SafetensorsTest, DeepNesting) {
  const int depth = 200000;
  std::string nested = std::string(depth, '[') + std::string(depth, ']');
  std::string file =
      write_raw("a.safetensors",
                R"({"w": {"dtype": "U8", "shape": )" + nested + R"(, "data_offsets": [0, 0]}})", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "shape element 0 is not an integer (an array of 1 elements)");
  file = write_raw("b.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": )" + nested + "}}", 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "\"data_offsets\" is an array of 1 elements");
  file = write_raw("c.safetensors", nested, 0);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "header is a JSON array");
}

TEST_F(SafetensorsTest, OffsetsOutOfRange) {
  std::string file = write_raw(
      "x.safetensors", R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})", 10);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file +
                            ": tensor \"w\": data_offsets [4, 12] run past the end of the data "
                            "(10 bytes)");
  file = write_raw("y.safetensors",
                   R"({"w": {"dtype": "U8", "shape": [0],)"
                   R"( "data_offsets": [18446744073709551615, 18446744073709551615]}})",
                   10);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "run past the end of the data");
}

TEST_F(SafetensorsTest, BeginAfterEnd) {
  std::string file = write_raw(
      "x.safetensors", R"({"w": {"dtype": "U8", "shape": [2], "data_offsets": [6, 4]}})", 10);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "tensor \"w\": data_offsets [6, 4] begin after they end");
}

TEST_F(SafetensorsTest, SizeDoesNotMatchShapeAndDtype) {
  std::string file = write_raw(
      "x.safetensors", R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 12);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "tensor \"w\": data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 "
                        "needs 12");
}

TEST_F(SafetensorsTest, OverlappingTensors) {
  std::string file = write_raw("x.safetensors",
                               R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                               R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                               12);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        file + ": tensors \"a\" [0, 8] and \"b\" [4, 12] overlap");
  // The same range twice.
  file = write_raw("y.safetensors",
                   R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
                   R"( "b": {"dtype": "I32", "shape": [1], "data_offsets": [0, 4]}})",
                   4);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file), "overlap");
  // One inside another, listed in the other order.
  file = write_raw("z.safetensors",
                   R"({"a": {"dtype": "U8", "shape": [2], "data_offsets": [3, 5]},)"
                   R"( "b": {"dtype": "U8", "shape": [10], "data_offsets": [0, 10]}})",
                   10);
  EXPECT_ERROR_CONTAINS(SafetensorsFile::open(file),
                        "tensors \"b\" [0, 10] and \"a\" [3, 5] overlap");
}

TEST_F(SafetensorsTest, EmptyTensorsOwnNoBytes) {
  // An empty tensor anywhere in the data, even inside another's range, overlaps nothing; gaps
  // between tensors are harmless.
  std::string file = write_raw("x.safetensors",
                               R"({"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]},)"
                               R"( "e": {"dtype": "F32", "shape": [0, 5], "data_offsets": [4, 4]},)"
                               R"( "b": {"dtype": "U8", "shape": [2], "data_offsets": [10, 12]},)"
                               R"( "f": {"dtype": "U8", "shape": [0], "data_offsets": [12, 12]}})",
                               12);
  auto opened = SafetensorsFile::open(file);
  EXPECT_EQ(opened->find("e")->nbytes, 0u);
  EXPECT_EQ(opened->find("b")->nbytes, 2u);
}

// Every truncation of a valid file and many random corruptions of its header either open or
// throw dsv3::Error: never a crash, never another exception (ASan/UBSan watch the rest).
TEST_F(SafetensorsTest, TruncationsAndCorruptionsNeverCrash) {
  write_safetensors(path("good.safetensors"),
                    {make_tensor("a", DType::BF16, {3, 3}), make_tensor("b", DType::F32, {2}),
                     make_tensor("c", DType::F8_E4M3, {5})},
                    {{"format", "pt"}});
  const std::string good = read_bytes(path("good.safetensors"));
  auto try_open = [&](const std::string& bytes) {
    std::string file = write_bytes("mutant.safetensors", bytes);
    try {
      auto opened = SafetensorsFile::open(file);
      for (const TensorEntry& entry : opened->tensors()) {
        // Touch every byte handed out, so that a view outside the mapping would be caught.
        unsigned sum = 0;
        for (size_t i = 0; i < entry.nbytes; ++i) sum += unsigned(entry.data[i]);
        (void)sum;
      }
      return true;
    } catch (const Error&) {
      return false;
    }
  };
  ASSERT_TRUE(try_open(good));
  for (size_t length = 0; length < good.size(); ++length)
    EXPECT_FALSE(try_open(good.substr(0, length))) << "truncated to " << length;
  std::mt19937 random(12345);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | uint8_t(good[i]);
  const char interesting[] = "0123456789-.,:[]{}\" eE";
  for (int round = 0; round < 1500; ++round) {
    std::string mutant = good;
    int edits = 1 + int(random() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t position = random() % (8 + header_length);
      mutant[position] =
          (random() % 2) ? char(random() % 256) : interesting[random() % (sizeof(interesting) - 1)];
    }
    try_open(mutant);
  }
}

// ---------------------------------------------------------------------------------------------
// Hostile checkpoint directories.

TEST_F(SafetensorsTest, CheckpointDirectoryProblems) {
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("absent")),
                        path("absent") + ": checkpoint directory does not exist");
  write_text(path("plain"), "x");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("plain")), path("plain") + ": not a directory");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_),
                        dir_ + ": no model.safetensors or model.safetensors.index.json");
  // A broken single file is reported by its path.
  write_bytes("model.safetensors", "abc");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), path("model.safetensors") + ": file is 3 bytes");
}

TEST_F(SafetensorsTest, IndexNamingMissingShard) {
  write_safetensors(path("a.safetensors"), {make_tensor("w", DType::F32, {1})});
  write_text(path("model.safetensors.index.json"),
             R"({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}})");
  EXPECT_ERROR_CONTAINS(
      Checkpoint::open(dir_),
      path("model.safetensors.index.json") + " names shard \"b.safetensors\" which does not exist");
}

TEST_F(SafetensorsTest, IndexNamingTensorItsShardLacks) {
  write_safetensors(path("a.safetensors"), {make_tensor("w", DType::F32, {1})});
  write_safetensors(path("b.safetensors"), {make_tensor("x", DType::F32, {1})});
  write_text(path("model.safetensors.index.json"),
             R"({"weight_map": {"w": "a.safetensors", "v": "b.safetensors"}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_),
                        "tensor \"v\" is listed in shard \"b.safetensors\", but " +
                            path("b.safetensors") + " does not hold it");
}

TEST_F(SafetensorsTest, IndexJsonMalformed) {
  write_safetensors(path("a.safetensors"), {make_tensor("w", DType::F32, {1})});
  const std::string index = path("model.safetensors.index.json");
  write_text(index, R"({"weight_map": {"w": "a.safetensors",)");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), index + ": not valid JSON");
  write_text(index, "");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), index + ": not valid JSON");
  write_text(index, R"(["a.safetensors"])");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), index + ": is a JSON array, expected an object");
  write_text(index, R"({"metadata": {}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), index + ": missing \"weight_map\"");
  write_text(index, R"({"weight_map": ["a.safetensors"]})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), "\"weight_map\" is a JSON array");
  write_text(index, R"({"weight_map": {}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), "\"weight_map\" is empty");
  write_text(index, R"({"weight_map": {"w": 3}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), "weight_map entry \"w\" is a JSON number");
  write_text(index, R"({"weight_map": {"w": "a.safetensors", "w": "a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), "duplicate key \"w\"");
}

TEST_F(SafetensorsTest, IndexCannotEscapeTheDirectory) {
  fs::create_directory(path("sub"));
  write_safetensors(path("sub/a.safetensors"), {make_tensor("w", DType::F32, {1})});
  write_safetensors(path("a.safetensors"), {make_tensor("w", DType::F32, {1})});
  const std::string index = path("sub/model.safetensors.index.json");
  write_text(index, R"({"weight_map": {"w": "../a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("sub")),
                        "names shard \"../a.safetensors\", which is not a plain file name");
  write_text(index, R"({"weight_map": {"w": ".."}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("sub")), "not a plain file name");
  write_text(index, R"({"weight_map": {"w": "/etc/passwd"}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("sub")), "not a plain file name");
  write_text(index, R"({"weight_map": {"w": ""}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(path("sub")), "not a plain file name");
  write_text(index, R"({"weight_map": {"w": "a.safetensors"}})");
  EXPECT_EQ(Checkpoint::open(path("sub")).require("w", {1}).file, path("sub/a.safetensors"));
}

TEST_F(SafetensorsTest, IndexWithCorruptShardNamesTheShard) {
  write_bytes("a.safetensors", std::string(12, '\xff'));
  write_text(path("model.safetensors.index.json"), R"({"weight_map": {"w": "a.safetensors"}})");
  EXPECT_ERROR_CONTAINS(Checkpoint::open(dir_), path("a.safetensors") + ": header length");
}

}  // namespace
}  // namespace dsv3
