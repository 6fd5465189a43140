#include "io/file_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "util/error.h"

namespace dsv3 {

namespace {

constexpr size_t kHugePageBytes = size_t(2) << 20;

// -1: not set, otherwise a FileMemory.
std::atomic<int> g_file_memory{-1};

// Anonymous memory of `bytes` (a multiple of kHugePageBytes) starting on a 2 MB boundary, so
// that every page of it can be a huge page.
void* map_huge_page_aligned(size_t bytes, const std::string& path) {
  void* mapping = ::mmap(nullptr, bytes + kHugePageBytes, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED) {
    throw Error(path + ": cannot allocate " + std::to_string(bytes) + " bytes to copy it into: " +
                std::strerror(errno));
  }
  char* base = static_cast<char*>(mapping);
  const uintptr_t address = reinterpret_cast<uintptr_t>(base);
  char* aligned = base + (kHugePageBytes - address % kHugePageBytes) % kHugePageBytes;
  if (aligned > base) ::munmap(base, size_t(aligned - base));
  const size_t tail = size_t(base + bytes + kHugePageBytes - (aligned + bytes));
  if (tail > 0) ::munmap(aligned + bytes, tail);
  return aligned;
}

// MemAvailable of /proc/meminfo in bytes; 0 when unknown.
uint64_t available_memory_bytes() {
  std::FILE* meminfo = std::fopen("/proc/meminfo", "r");
  if (meminfo == nullptr) return 0;
  char line[256];
  unsigned long long kilobytes = 0;
  while (std::fgets(line, sizeof line, meminfo) != nullptr) {
    if (std::sscanf(line, "MemAvailable: %llu kB", &kilobytes) == 1) break;
  }
  std::fclose(meminfo);
  return uint64_t(kilobytes) * 1024;
}

}  // namespace

FileMemory file_memory() {
  const int set = g_file_memory.load(std::memory_order_relaxed);
  if (set >= 0) return FileMemory(set);
  const char* no_mmap = std::getenv("DSV3_NO_MMAP");
  if (no_mmap == nullptr || *no_mmap == '\0') return FileMemory::kAuto;
  return std::strcmp(no_mmap, "0") == 0 ? FileMemory::kMapped : FileMemory::kHugePageCopy;
}

void set_file_memory(FileMemory memory) {
  g_file_memory.store(int(memory), std::memory_order_relaxed);
}

FileBytes load_file_bytes(int fd, uint64_t size, FileMemory memory, const std::string& path,
                          uint64_t aligned_offset) {
  if (memory == FileMemory::kAuto) {
    memory = size <= available_memory_bytes() / 2 ? FileMemory::kHugePageCopy : FileMemory::kMapped;
  }
  if (memory == FileMemory::kMapped) {
    void* mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) throw Error(path + ": cannot mmap: " + std::strerror(errno));
    return {mapping, mapping, size};
  }
  // The file from `shift` bytes into the copy on, so that its byte aligned_offset starts a page.
  constexpr uint64_t kPageBytes = 4096;
  const uint64_t shift = (kPageBytes - aligned_offset % kPageBytes) % kPageBytes;
  const size_t bytes = (size + shift + kHugePageBytes - 1) / kHugePageBytes * kHugePageBytes;
  char* copy = static_cast<char*>(map_huge_page_aligned(bytes, path));
  // Advised before the first touch, so the page faults of the reads below take 2 MB pages.
  // Without transparent huge pages (or with none free) this is still a working copy.
  ::madvise(copy, bytes, MADV_HUGEPAGE);
  // Each thread reads whole 2 MB pages: faulting in and zeroing the pages is a good part of the
  // time, and it runs in parallel too.
  const size_t threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, 8);
  const size_t pages = bytes / kHugePageBytes;
  std::atomic<int> read_errno{0};
  // Thread `thread`'s pages of the copy, as the file offsets they hold.
  auto read_pages = [&](size_t thread) {
    auto file_offset = [&](size_t page) {
      return std::clamp<uint64_t>(page * kHugePageBytes, shift, shift + size) - shift;
    };
    const uint64_t begin = file_offset(pages * thread / threads);
    const uint64_t end = file_offset(pages * (thread + 1) / threads);
    for (uint64_t done = begin; done < end;) {
      const ssize_t got = ::pread(fd, copy + shift + done, size_t(end - done), off_t(done));
      if (got <= 0) {
        read_errno.store(got < 0 ? errno : EIO);
        return;
      }
      done += uint64_t(got);
    }
  };
  std::vector<std::thread> readers;
  for (size_t t = 1; t < threads; ++t) readers.emplace_back(read_pages, t);
  read_pages(0);
  for (std::thread& reader : readers) reader.join();
  if (read_errno.load() != 0) {
    ::munmap(copy, bytes);
    throw Error(path + ": cannot read: " + std::strerror(read_errno.load()));
  }
  return {copy + shift, copy, bytes, true};
}

}  // namespace dsv3
