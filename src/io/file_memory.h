// Where the bytes of a weight file live while the model runs. Mapped: the file's page-cache
// pages, used in place: loading is instant and costs no memory of its own, but the pages are
// 4 KB, and streaming gigabytes of weights through 4 KB pages spends a share of the memory
// bandwidth on page walks (TLB misses, doubly expensive in a virtual machine): here decode on
// mapped BF16 weights stayed near 25-34 GB/s while 2 MB pages read at 30-57 GB/s. Copied: the
// file is read once into anonymous memory advised for transparent huge pages (like llama.cpp
// --no-mmap): 1.4-4 s for 2.45 GB here (mostly the kernel clearing the fresh pages), and a
// private copy of the weights (the page cache keeps its own until the kernel reclaims it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dsv3 {

// kAuto: a copy when the file takes at most half of the memory available (MemAvailable, which
// counts the page cache as available), so that small and medium models decode at full speed
// while a checkpoint near the size of the memory is still only mapped.
enum class FileMemory { kAuto, kMapped, kHugePageCopy };

// The setting files are opened with: set_file_memory's, else from the environment variable
// DSV3_NO_MMAP ("1": kHugePageCopy, "0": kMapped), else kAuto.
FileMemory file_memory();
void set_file_memory(FileMemory memory);

// The `size` bytes of the open file `fd` (named `path` in errors) in memory as `memory` says
// (kAuto decided here), from `data` on (read-only when mapped); release with
// munmap(mapping, mapped_bytes).
// A copy puts the file's byte `aligned_offset` on a page boundary (a mapping has the file's own
// alignment). Throws dsv3::Error.
// A copy is left writable: a model load regroups BF16 matrices in it in place
// (tensor/row_blocks.h), which a mapping of the file cannot take without a copy of its own.
struct FileBytes {
  const void* data = nullptr;
  void* mapping = nullptr;
  size_t mapped_bytes = 0;
  bool private_copy = false;
};
FileBytes load_file_bytes(int fd, uint64_t size, FileMemory memory, const std::string& path,
                          uint64_t aligned_offset = 0);

}  // namespace dsv3
