#include "tensor/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <stdexcept>
#include <thread>
#include <vector>

#include "util/error.h"

namespace dsv3 {
namespace {

// Runs parallel_for(n) and checks every index was visited exactly once, by contiguous chunks.
void expect_covers_once(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> visits(size_t(n > 0 ? n : 0));
  std::atomic<int> chunks{0};
  pool.parallel_for(n, [&](int64_t begin, int64_t end) {
    EXPECT_LT(begin, end);
    chunks.fetch_add(1);
    for (int64_t i = begin; i < end; ++i) visits[size_t(i)].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(visits[size_t(i)].load(), 1) << "index " << i;
  EXPECT_LE(chunks.load(), pool.num_threads());
  EXPECT_LE(int64_t(chunks.load()), n);
}

TEST(ThreadPool, CoversEveryIndexOnceForManySizes) {
  for (int threads : {1, 2, 3, 5}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.num_threads(), threads);
    for (int64_t n : {0, 1, 2, 3, 4, 7, 64, 1000, 12345}) expect_covers_once(pool, n);
  }
}

TEST(ThreadPool, ChunksAreContiguousAndInOrder) {
  for (int64_t n : {1, 5, 17, 100}) {
    for (int64_t chunks : {1, 2, 3, 8}) {
      int64_t expected_begin = 0;
      for (int64_t i = 0; i < chunks; ++i) {
        int64_t begin, end;
        ThreadPool::chunk_range(n, chunks, i, &begin, &end);
        EXPECT_EQ(begin, expected_begin);
        EXPECT_GE(end, begin);
        EXPECT_LE(end - begin, (n + chunks - 1) / chunks);
        expected_begin = end;
      }
      EXPECT_EQ(expected_begin, n);
    }
  }
}

TEST(ThreadPool, FewerItemsThanThreadsRunsOneChunkPerItem) {
  ThreadPool pool(4);
  std::atomic<int> calls{0};
  pool.parallel_for(2, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(end - begin, 1);
    calls.fetch_add(1);
  });
  EXPECT_EQ(calls.load(), 2);
}

TEST(ThreadPool, UsesSeveralThreads) {
  ThreadPool pool(2);
  std::atomic<int> distinct{0};
  const auto caller = std::this_thread::get_id();
  pool.parallel_for(2, [&](int64_t begin, int64_t) {
    // Chunk 0 runs on the caller, chunk 1 on the worker.
    EXPECT_EQ(std::this_thread::get_id() == caller, begin == 0);
    distinct.fetch_add(1);
  });
  EXPECT_EQ(distinct.load(), 2);
}

TEST(ThreadPool, NestedCallsRunSeriallyWithoutDeadlock) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.parallel_for(8, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      int inner_chunks = 0;
      pool.parallel_for(10, [&](int64_t inner_begin, int64_t inner_end) {
        ++inner_chunks;  // serial: no race
        total.fetch_add(inner_end - inner_begin);
      });
      EXPECT_EQ(inner_chunks, 1);
      // Another pool from inside a worker is nested too.
      ThreadPool::global().parallel_for(3, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
  });
  EXPECT_EQ(total.load(), 8 * 13);
}

TEST(ThreadPool, ManyQuickCalls) {
  ThreadPool pool(2);
  int64_t sums[2] = {0, 0};
  for (int call = 0; call < 100000; ++call) {
    pool.parallel_for(2, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) sums[i] += call;
    });
  }
  const int64_t expected = int64_t(99999) * 100000 / 2;
  EXPECT_EQ(sums[0], expected);
  EXPECT_EQ(sums[1], expected);
}

TEST(ThreadPool, ConcurrentCallersFromOutsideThePool) {
  ThreadPool pool(2);
  auto hammer = [&](std::atomic<int64_t>* total) {
    for (int call = 0; call < 2000; ++call) {
      pool.parallel_for(16, [&](int64_t begin, int64_t end) { total->fetch_add(end - begin); });
    }
  };
  std::atomic<int64_t> total_a{0}, total_b{0};
  std::thread a(hammer, &total_a), b(hammer, &total_b);
  a.join();
  b.join();
  EXPECT_EQ(total_a.load(), 2000 * 16);
  EXPECT_EQ(total_b.load(), 2000 * 16);
}

TEST(ThreadPool, RethrowsTheExceptionOfAChunk) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_for(2,
                                 [](int64_t begin, int64_t) {
                                   if (begin == 1) throw std::runtime_error("chunk 1 failed");
                                 }),
               std::runtime_error);
  expect_covers_once(pool, 100);  // still usable
}

TEST(ThreadPool, SetNumThreadsResizes) {
  ThreadPool pool(1);
  EXPECT_EQ(pool.num_threads(), 1);
  pool.set_num_threads(3);
  EXPECT_EQ(pool.num_threads(), 3);
  expect_covers_once(pool, 50);
  pool.set_num_threads(2);
  EXPECT_EQ(pool.num_threads(), 2);
  expect_covers_once(pool, 50);
  pool.set_num_threads(0);  // hardware concurrency
  EXPECT_GE(pool.num_threads(), 1);
  pool.parallel_for(2, [&](int64_t, int64_t) { EXPECT_THROW(pool.set_num_threads(1), Error); });
}

TEST(ThreadPool, WorkersWakeUpAfterSleeping) {
  ThreadPool pool(2);
  std::atomic<int> calls{0};
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // past the spin: workers block
    pool.parallel_for(2, [&](int64_t, int64_t) { calls.fetch_add(1); });
  }
  EXPECT_EQ(calls.load(), 6);
}

TEST(ThreadPool, SharedChunksCoverEveryIndexOnceMixedWithPlainCalls) {
  // parallel_share and parallel_for interleaved quickly (workers arriving late to a shared job
  // must never run a chunk of a later job twice or miss a plain one), with 2 and 3 threads.
  constexpr int kCalls = 5000;
  for (int threads : {2, 3}) {
    ThreadPool pool(threads);
    std::vector<std::atomic<int>> visits(37);
    int64_t plain_total = 0;
    for (int call = 0; call < kCalls; ++call) {
      pool.parallel_share(37, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; ++i) visits[size_t(i)].fetch_add(1);
      });
      if (call % 3 == 0) {
        std::atomic<int64_t> covered{0};
        pool.parallel_for(5, [&](int64_t begin, int64_t end) { covered.fetch_add(end - begin); });
        plain_total += covered.load();
      }
    }
    for (auto& v : visits) EXPECT_EQ(v.load(), kCalls);
    EXPECT_EQ(plain_total, int64_t(5) * ((kCalls + 2) / 3));
  }
}

TEST(ThreadPool, SharedJobRethrowsAndNestsSerially) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.parallel_share(2,
                                   [](int64_t begin, int64_t) {
                                     if (begin == 1) throw std::runtime_error("chunk 1 failed");
                                   }),
               std::runtime_error);
  std::atomic<int> inner{0};
  pool.parallel_share(2, [&](int64_t, int64_t) {
    pool.parallel_share(4, [&](int64_t begin, int64_t end) { inner.fetch_add(int(end - begin)); });
  });
  EXPECT_EQ(inner.load(), 8);
  expect_covers_once(pool, 100);  // still usable
}

TEST(ThreadPool, ClaimCallsEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {1, 2, 5, 64, 1000}) {
      std::vector<std::atomic<int>> visits(static_cast<size_t>(n));
      pool.parallel_claim(n, [&](int64_t i) { visits[size_t(i)].fetch_add(1); });
      for (auto& v : visits) EXPECT_EQ(v.load(), 1) << "n=" << n << " threads=" << threads;
    }
  }
}

}  // namespace
}  // namespace dsv3
