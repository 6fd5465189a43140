#include "tensor/thread_pool.h"

#include <algorithm>
#include <chrono>

#include "util/error.h"

namespace dsv3 {

namespace {

// True on pool workers always, and on a caller while it runs a parallel_for: a parallel_for
// issued there runs serially instead of waiting for threads that are busy with the outer one.
thread_local bool t_inside_parallel_for = false;

// How long an idle thread polls before blocking in the kernel. Between two matrix products of
// a decode step there are only microseconds of serial work, so a short spin saves a futex
// wake-up (several microseconds) per operation, while a longer idle period costs no CPU.
constexpr auto kSpinDuration = std::chrono::microseconds(200);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Spins until value != old for at most kSpinDuration; returns whether it changed.
template <class T>
bool spin_while_equal(const std::atomic<T>& value, T old) {
  auto deadline = std::chrono::steady_clock::now() + kSpinDuration;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (value.load(std::memory_order_acquire) != old) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

// The generation that publishes the next job: generations step by 2, the low bit telling a
// shared job (parallel_share) from a plain one.
uint32_t next_generation(uint32_t generation, bool shared) {
  return (generation & ~1u) + 2u + (shared ? 1u : 0u);
}

// A shared job's claim word: generation, chunk count and next unclaimed chunk.
uint64_t shared_claim(uint32_t generation, int64_t chunks, int64_t next) {
  return (uint64_t(generation) << 32) | (uint64_t(chunks) << 16) | uint64_t(next);
}

// Spins until remaining() != old for at most kSpinDuration; returns whether it changed.
template <class Remaining>
bool spin_while_equal_value(const Remaining& remaining, int64_t old) {
  auto deadline = std::chrono::steady_clock::now() + kSpinDuration;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (remaining() != old) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
  }
}

}  // namespace

ThreadPool::ThreadPool(int num_threads) { start_workers(num_threads); }

ThreadPool::~ThreadPool() { stop_workers(); }

ThreadPool& ThreadPool::global() {
  static ThreadPool pool(0);
  return pool;
}

void ThreadPool::set_num_threads(int num_threads) {
  if (t_inside_parallel_for) throw Error("ThreadPool::set_num_threads called inside parallel_for");
  std::lock_guard<std::mutex> lock(dispatch_mutex_);
  stop_workers();
  start_workers(num_threads);
}

void ThreadPool::chunk_range(int64_t n, int64_t num_chunks, int64_t index, int64_t* begin,
                             int64_t* end) {
  const int64_t base = n / num_chunks;
  const int64_t remainder = n % num_chunks;
  *begin = index * base + std::min(index, remainder);
  *end = *begin + base + (index < remainder ? 1 : 0);
}

void ThreadPool::start_workers(int num_threads) {
  if (num_threads <= 0) num_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  stopping_ = false;
  workers_.reserve(size_t(num_threads - 1));
  // A worker starts from the generation current now: a job published before its thread gets
  // to run is then still new to it.
  const uint32_t generation = job_generation_.load();
  for (int i = 0; i < num_threads - 1; ++i) {
    workers_.emplace_back([this, i, generation] { worker_loop(i, generation); });
  }
}

void ThreadPool::stop_workers() {
  if (workers_.empty()) return;
  stopping_ = true;
  workers_pending_.store(int(workers_.size()));
  job_generation_.store(next_generation(job_generation_.load(), /*shared=*/false));
  {
    std::lock_guard<std::mutex> sleep_lock(sleep_mutex_);
    worker_wake_.notify_all();
  }
  for (auto& worker : workers_) worker.join();
  workers_.clear();
}

void ThreadPool::run_chunk(int64_t index) {
  if (index >= job_chunks_) return;
  int64_t begin, end;
  chunk_range(job_size_, job_chunks_, index, &begin, &end);
  try {
    job_fn_(job_context_, begin, end);
  } catch (...) {
    std::lock_guard<std::mutex> lock(error_mutex_);
    if (!first_error_) first_error_ = std::current_exception();
  }
}

bool ThreadPool::run_shared_chunk(uint32_t generation) {
  uint64_t claim = shared_claim_.load(std::memory_order_acquire);
  for (;;) {
    if (uint32_t(claim >> 32) != generation) return false;  // that job is over
    const int64_t chunks = int64_t((claim >> 16) & 0xffff), index = int64_t(claim & 0xffff);
    if (index >= chunks) return false;
    // Owning a chunk keeps the job alive (the caller waits for it), so its fields stay valid.
    if (shared_claim_.compare_exchange_weak(claim, claim + 1, std::memory_order_acq_rel,
                                            std::memory_order_acquire)) {
      run_chunk(index);
      if (shared_done_.fetch_add(1) + 1 == chunks && caller_sleeping_.load()) {
        std::lock_guard<std::mutex> sleep_lock(sleep_mutex_);
        caller_wake_.notify_one();
      }
      return true;
    }
  }
}

void ThreadPool::run(int64_t n, ChunkFn chunk_fn, void* context, bool shared) {
  std::unique_lock<std::mutex> lock(dispatch_mutex_, std::defer_lock);
  if (n == 1 || workers_.empty() || t_inside_parallel_for || !lock.try_lock()) {
    struct InsideGuard {
      bool was_inside = t_inside_parallel_for;
      InsideGuard() { t_inside_parallel_for = true; }
      ~InsideGuard() { t_inside_parallel_for = was_inside; }
    } inside;
    chunk_fn(context, 0, n);
    return;
  }
  t_inside_parallel_for = true;
  job_fn_ = chunk_fn;
  job_context_ = context;
  job_size_ = n;
  job_chunks_ = std::min<int64_t>(n, num_threads());
  first_error_ = nullptr;
  const uint32_t generation = next_generation(job_generation_.load(), shared);
  if (shared) {
    // Chunks are claimed by whoever comes first; the caller waits only for claimed ones.
    shared_done_.store(0);
    shared_claim_.store(shared_claim(generation, job_chunks_, 0));
  } else {
    // Every worker acknowledges every plain job (even one with no chunk for it), so no worker
    // can still be reading this job's fields when the next job overwrites them.
    workers_pending_.store(int(workers_.size()));
  }
  job_generation_.store(generation);  // seq_cst: pairs with the workers' sleep announcement
  if (workers_sleeping_.load() > 0) {
    std::lock_guard<std::mutex> sleep_lock(sleep_mutex_);
    worker_wake_.notify_all();
  }

  auto wait_until_zero = [&](auto remaining) {
    for (int64_t left; (left = remaining()) != 0;) {
      if (spin_while_equal_value(remaining, left)) continue;
      std::unique_lock<std::mutex> sleep_lock(sleep_mutex_);
      caller_sleeping_.store(true);  // seq_cst: the last worker then sees it, or we see its 0
      caller_wake_.wait(sleep_lock, [&] { return remaining() == 0; });
      caller_sleeping_.store(false);
    }
  };
  if (shared) {
    while (run_shared_chunk(generation)) {
    }
    const int64_t chunks = job_chunks_;
    wait_until_zero([&] { return chunks - shared_done_.load(std::memory_order_acquire); });
  } else {
    run_chunk(0);
    wait_until_zero([&] { return int64_t(workers_pending_.load(std::memory_order_acquire)); });
  }
  t_inside_parallel_for = false;
  std::exception_ptr error = first_error_;
  first_error_ = nullptr;
  lock.unlock();
  if (error) std::rethrow_exception(error);
}

void ThreadPool::worker_loop(int worker_index, uint32_t seen_generation) {
  t_inside_parallel_for = true;
  for (;;) {
    if (!spin_while_equal(job_generation_, seen_generation)) {
      std::unique_lock<std::mutex> sleep_lock(sleep_mutex_);
      workers_sleeping_.fetch_add(1);  // seq_cst: the caller then sees us, or we see its job
      worker_wake_.wait(sleep_lock, [&] { return job_generation_.load() != seen_generation; });
      workers_sleeping_.fetch_sub(1);
    }
    seen_generation = job_generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    if (seen_generation & 1u) {  // shared: take chunks while there are any
      while (run_shared_chunk(seen_generation)) {
      }
      continue;
    }
    run_chunk(int64_t(worker_index) + 1);
    if (workers_pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) {
      std::lock_guard<std::mutex> sleep_lock(sleep_mutex_);
      caller_wake_.notify_one();
    }
  }
}

}  // namespace dsv3
