// ElasticThreadPool: blocking tasks never wait for each other while below the cap, idle
// threads go away, and a stopped pool refuses work but finishes what it has.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "counterpoint/errors.hpp"
#include "counterpoint/thread_pool.hpp"
#include "test_harness.hpp"

using namespace counterpoint;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Tasks block on it until released, so a test controls how many are running at once.
class Gate {
 public:
  // Called by a task: counts it in and blocks until release() (or the safety timeout,
  // so a broken pool fails the test instead of hanging it).
  void enter() {
    std::unique_lock<std::mutex> lock(mutex_);
    ++arrived_;
    changed_.notify_all();
    changed_.wait_for(lock, seconds(20), [&] { return released_; });
  }
  bool wait_arrived(int n, milliseconds timeout = milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return arrived_ >= n; });
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      released_ = true;
    }
    changed_.notify_all();
  }
  int arrived() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return arrived_;
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  bool released_ = false;
};

ElasticThreadPool::Options options(std::size_t max_threads, milliseconds idle) {
  ElasticThreadPool::Options o;
  o.max_threads = max_threads;
  o.idle_timeout = idle;
  return o;
}

}  // namespace

TEST(pool_grows_for_blocking_tasks) {
  constexpr int kTasks = 12;
  Gate gate;
  std::atomic<int> finished{0};
  ElasticThreadPool pool(options(64, seconds(10)));
  for (int i = 0; i < kTasks; ++i) {
    pool.submit([&] {
      gate.enter();
      finished.fetch_add(1);
    });
  }
  // Every task is inside the gate at once: none waited for another to finish.
  CHECK(gate.wait_arrived(kTasks));
  CHECK_EQ(pool.threads(), std::size_t{kTasks});
  CHECK_EQ(pool.queued(), std::size_t{0});
  CHECK_EQ(pool.idle_threads(), std::size_t{0});
  gate.release();
  CHECK(cptest::eventually([&] { return finished.load() == kTasks; }));
  CHECK(cptest::eventually([&] { return pool.idle_threads() == std::size_t{kTasks}; }));
}

TEST(pool_reuses_idle_threads) {
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(16, seconds(10)));
  pool.submit([&] { done.fetch_add(1); });
  REQUIRE(cptest::eventually([&] { return done.load() == 1 && pool.idle_threads() == 1; }));
  for (int i = 0; i < 5; ++i) {
    pool.submit([&] { done.fetch_add(1); });
    REQUIRE(cptest::eventually([&] { return done.load() == 2 + i && pool.idle_threads() == 1; }));
  }
  CHECK_EQ(pool.threads(), std::size_t{1});
}

TEST(pool_respects_max_threads) {
  constexpr int kTasks = 6;
  std::atomic<int> running{0};
  std::atomic<int> most{0};
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(2, seconds(10)));
  for (int i = 0; i < kTasks; ++i) {
    pool.submit([&] {
      const int now = running.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(milliseconds(100));
      running.fetch_sub(1);
      done.fetch_add(1);
    });
  }
  CHECK(pool.threads() <= 2);
  CHECK(pool.queued() >= 2);
  CHECK(cptest::eventually([&] { return done.load() == kTasks; }, milliseconds(20000)));
  CHECK(most.load() <= 2);
  CHECK_EQ(pool.threads(), std::size_t{2});
}

TEST(pool_idle_threads_exit_after_timeout) {
  constexpr int kTasks = 4;
  std::atomic<int> hooks{0};
  std::atomic<int> done{0};
  Gate gate;
  ElasticThreadPool pool(options(16, milliseconds(50)));
  pool.set_thread_exit_hook([&] { hooks.fetch_add(1); });
  for (int i = 0; i < kTasks; ++i) pool.submit([&] { gate.enter(); });
  REQUIRE(gate.wait_arrived(kTasks));
  CHECK_EQ(pool.threads(), std::size_t{kTasks});
  gate.release();
  CHECK(cptest::eventually([&] { return pool.threads() == 0; }));
  CHECK_EQ(pool.idle_threads(), std::size_t{0});
  CHECK_EQ(hooks.load(), kTasks);

  // A shrunken pool grows again on demand.
  pool.submit([&] { done.fetch_add(1); });
  CHECK(cptest::eventually([&] { return done.load() == 1; }));
}

TEST(pool_stop_rejects_new_work) {
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(4, seconds(10)));
  pool.submit([&] { done.fetch_add(1); });
  REQUIRE(cptest::eventually([&] { return done.load() == 1; }));
  pool.stop();
  CHECK_THROWS(EngineError, pool.submit([&] { done.fetch_add(100); }));
  CHECK(pool.join(milliseconds(5000)));
  CHECK_EQ(pool.threads(), std::size_t{0});
  CHECK_EQ(done.load(), 1);
  pool.stop();  // idempotent
}

TEST(pool_stop_still_runs_queued_tasks) {
  Gate gate;
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(1, seconds(10)));
  pool.submit([&] { gate.enter(); });
  for (int i = 0; i < 3; ++i) pool.submit([&] { done.fetch_add(1); });
  REQUIRE(gate.wait_arrived(1));
  CHECK_EQ(pool.queued(), std::size_t{3});
  pool.stop();
  CHECK(!pool.join(milliseconds(20)));  // the blocked task holds the only thread
  gate.release();
  CHECK(pool.join(milliseconds(10000)));
  CHECK_EQ(done.load(), 3);
  CHECK_EQ(pool.queued(), std::size_t{0});
}

TEST(pool_exit_hook_runs_on_each_exiting_thread) {
  constexpr int kTasks = 3;
  std::mutex mutex;
  std::set<std::thread::id> task_threads;
  std::set<std::thread::id> hook_threads;
  int hook_calls = 0;
  Gate gate;
  ElasticThreadPool pool(options(16, seconds(10)));
  pool.set_thread_exit_hook([&] {
    std::lock_guard<std::mutex> lock(mutex);
    hook_threads.insert(std::this_thread::get_id());
    ++hook_calls;
  });
  for (int i = 0; i < kTasks; ++i) {
    pool.submit([&] {
      {
        std::lock_guard<std::mutex> lock(mutex);
        task_threads.insert(std::this_thread::get_id());
      }
      gate.enter();
    });
  }
  REQUIRE(gate.wait_arrived(kTasks));
  gate.release();
  pool.stop();
  REQUIRE(pool.join(milliseconds(10000)));
  std::lock_guard<std::mutex> lock(mutex);
  CHECK_EQ(hook_calls, kTasks);
  CHECK_EQ(task_threads.size(), std::size_t{kTasks});
  CHECK(hook_threads == task_threads);
}

TEST(pool_survives_throwing_task) {
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(4, seconds(10)));
  pool.submit([] { throw std::runtime_error("task failed"); });
  pool.submit([] { throw 42; });
  pool.submit([&] { done.fetch_add(1); });
  CHECK(cptest::eventually([&] { return done.load() == 1; }));
  pool.submit([&] { done.fetch_add(1); });
  CHECK(cptest::eventually([&] { return done.load() == 2; }));
}

TEST(pool_destructor_waits_for_running_task) {
  std::atomic<bool> finished{false};
  {
    std::atomic<bool> started{false};
    ElasticThreadPool pool(options(4, seconds(10)));
    pool.submit([&] {
      started.store(true);
      std::this_thread::sleep_for(milliseconds(50));
      finished.store(true);
    });
    REQUIRE(cptest::eventually([&] { return started.load(); }));
  }
  CHECK(finished.load());
}

TEST(pool_concurrent_submitters) {
  constexpr int kSubmitters = 6;
  constexpr int kEach = 200;
  std::atomic<int> done{0};
  std::vector<std::thread> submitters;
  ElasticThreadPool pool(options(8, seconds(10)));
  for (int t = 0; t < kSubmitters; ++t) {
    submitters.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) pool.submit([&] { done.fetch_add(1); });
    });
  }
  for (auto& thread : submitters) thread.join();
  CHECK(cptest::eventually([&] { return done.load() == kSubmitters * kEach; }, milliseconds(20000)));
  CHECK(pool.threads() <= 8);
  pool.stop();
  CHECK(pool.join(milliseconds(10000)));
}

TEST(pool_zero_max_threads_means_one) {
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(0, seconds(10)));
  for (int i = 0; i < 3; ++i) pool.submit([&] { done.fetch_add(1); });
  CHECK(cptest::eventually([&] { return done.load() == 3; }));
  CHECK_EQ(pool.threads(), std::size_t{1});
}
