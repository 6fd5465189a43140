// One persistent set of worker threads for the data-parallel loops of the kernels. Threads are
// created once (and again only by set_num_threads), wake up within microseconds (they spin
// briefly before blocking), and the calling thread always takes part in the work.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace dsv3 {

class ThreadPool {
 public:
  // num_threads counts the caller too; <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The pool the kernels use; starts with hardware_concurrency() threads.
  static ThreadPool& global();

  // Threads taking part in a parallel_for, the caller included (>= 1).
  int num_threads() const { return int(workers_.size()) + 1; }
  // Replaces the workers. Blocks while another thread is inside parallel_for on this pool;
  // throws dsv3::Error when called from inside a parallel_for.
  void set_num_threads(int num_threads);

  // Calls fn(begin, end) on at most num_threads() contiguous chunks that cover [0, n) in order
  // (chunk i on thread i, the caller running chunk 0) and returns when all are done, rethrowing
  // the first exception a chunk threw. A call made from inside a parallel_for, or while another
  // thread is using the pool, runs fn(0, n) on the calling thread: nesting never deadlocks.
  template <class Fn>
  void parallel_for(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    using FnType = std::remove_reference_t<Fn>;
    run(n, &ThreadPool::call_chunk<FnType>, const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // Like parallel_for, except that chunks go to whichever thread is free first: the caller,
  // once done with one, takes the chunks no worker has started yet, so the call never waits
  // for a worker that is late (still waking up, or preempted on a busy host). Chunks run in no
  // fixed order on no fixed thread: for work whose result does not depend on either.
  template <class Fn>
  void parallel_share(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    using FnType = std::remove_reference_t<Fn>;
    run(n, &ThreadPool::call_chunk<FnType>, const_cast<void*>(static_cast<const void*>(&fn)),
        /*shared=*/true);
  }

  // Calls fn(i) for every i in [0, n), each index claimed one at a time by whichever thread is
  // free (parallel_share with single-index claims): for coarse independent items (a few
  // dozen to thousands), so a preempted thread holds up at most the one it is running.
  template <class Fn>
  void parallel_claim(int64_t n, Fn&& fn) {
    if (n <= 0) return;
    std::atomic<int64_t> next{0};
    parallel_share(std::min<int64_t>(n, num_threads()), [&](int64_t, int64_t) {
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i);
    });
  }

  // [begin, end) of chunk `index` when [0, n) is cut into `num_chunks` near-equal pieces.
  static void chunk_range(int64_t n, int64_t num_chunks, int64_t index, int64_t* begin,
                          int64_t* end);

 private:
  using ChunkFn = void (*)(void* context, int64_t begin, int64_t end);
  template <class FnType>
  static void call_chunk(void* context, int64_t begin, int64_t end) {
    (*static_cast<FnType*>(context))(begin, end);
  }

  void run(int64_t n, ChunkFn chunk_fn, void* context, bool shared = false);
  void run_chunk(int64_t index);
  // Shared jobs: claims the next chunk of job `generation` and runs it; false when none is left
  // (or the job is over).
  bool run_shared_chunk(uint32_t generation);
  void worker_loop(int worker_index, uint32_t seen_generation);
  void start_workers(int num_threads);
  void stop_workers();

  std::vector<std::thread> workers_;
  std::mutex dispatch_mutex_;  // held by the thread whose job the workers are running

  // The current job, published by incrementing job_generation_.
  ChunkFn job_fn_ = nullptr;
  void* job_context_ = nullptr;
  int64_t job_size_ = 0;
  int64_t job_chunks_ = 0;
  bool stopping_ = false;
  // Generations step by 2; the low bit marks a shared job (parallel_share).
  std::atomic<uint32_t> job_generation_{0};
  // Shared jobs: (generation << 32) | next unclaimed chunk, and the chunks finished so far.
  std::atomic<uint64_t> shared_claim_{0};
  std::atomic<int64_t> shared_done_{0};
  std::atomic<int> workers_sleeping_{0};
  std::atomic<int> workers_pending_{0};  // workers that have not finished the current job
  std::atomic<bool> caller_sleeping_{false};
  // Blocking after the spin (std::atomic::wait of GCC 12 can miss a wake-up, bug 104928).
  std::mutex sleep_mutex_;
  std::condition_variable worker_wake_;
  std::condition_variable caller_wake_;

  std::mutex error_mutex_;
  std::exception_ptr first_error_;
};

}  // namespace dsv3
