// ElasticThreadPool: blocking tasks never wait for each other while below the cap, idle
// threads go away, and a stopped pool refuses work but finishes what it has.
#include <pthread.h>

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

ElasticThreadPool::Options options(std::size_t max_threads, milliseconds idle,
                                   std::size_t max_blocked = 64) {
  ElasticThreadPool::Options o;
  o.max_threads = max_threads;
  o.idle_timeout = idle;
  o.max_blocked = max_blocked;
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
  cptest::Concurrency concurrency;
  std::atomic<int> done{0};
  ElasticThreadPool pool(options(2, seconds(10)));
  for (int i = 0; i < kTasks; ++i) {
    pool.submit([&] {
      concurrency.enter();
      std::this_thread::sleep_for(milliseconds(100));
      concurrency.leave();
      done.fetch_add(1);
    });
  }
  CHECK(pool.threads() <= 2);
  CHECK(pool.queued() >= 2);
  CHECK(cptest::eventually([&] { return done.load() == kTasks; }, milliseconds(20000)));
  CHECK(concurrency.most.load() <= 2);
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

// ---- nested waits (issue 7, defect 3) -------------------------------------------------

TEST(pool_blocked_scope_off_the_pool_does_nothing) {
  ElasticThreadPool pool(options(2, seconds(10)));
  CHECK(ElasticThreadPool::current() == nullptr);
  {
    ElasticThreadPool::BlockedScope blocked;
    CHECK_EQ(pool.blocked_threads(), std::size_t{0});
  }
  std::atomic<ElasticThreadPool*> seen{nullptr};
  pool.submit([&] { seen.store(ElasticThreadPool::current()); });
  CHECK(cptest::eventually([&] { return seen.load() == &pool; }));
}

// Every thread of the pool waits for work that is queued behind them: without
// compensation this never finishes.
TEST(pool_blocked_threads_do_not_count_against_the_cap) {
  constexpr int kWaiters = 4;
  ElasticThreadPool pool(options(2, seconds(10), 16));
  std::mutex mutex;
  std::condition_variable changed;
  bool released = false;
  std::atomic<int> woke{0};
  std::atomic<int> timed_out{0};
  for (int i = 0; i < kWaiters; ++i) {
    pool.submit([&] {
      ElasticThreadPool::BlockedScope blocked;
      std::unique_lock<std::mutex> lock(mutex);
      if (changed.wait_for(lock, seconds(20), [&] { return released; })) {
        woke.fetch_add(1);
      } else {
        timed_out.fetch_add(1);
      }
    });
  }
  // Queued behind the waiters; only a thread standing in for them can run it.
  pool.submit([&] {
    {
      std::lock_guard<std::mutex> lock(mutex);
      released = true;
    }
    changed.notify_all();
  });
  CHECK(cptest::eventually([&] { return woke.load() == kWaiters; }, milliseconds(15000)));
  CHECK_EQ(timed_out.load(), 0);
  CHECK(cptest::eventually([&] { return pool.blocked_threads() == 0; }));
  // Stand-ins retire once the waiters are back: at most max_threads run tasks again.
  cptest::Concurrency concurrency;
  std::atomic<int> done{0};
  for (int i = 0; i < 8; ++i) {
    pool.submit([&] {
      concurrency.enter();
      std::this_thread::sleep_for(milliseconds(20));
      concurrency.leave();
      done.fetch_add(1);
    });
  }
  CHECK(cptest::eventually([&] { return done.load() == 8; }, milliseconds(15000)));
  CHECK(concurrency.most.load() <= 2 + kWaiters);  // surplus threads may finish one task each
}

TEST(pool_blocked_limit_fails_at_once) {
  ElasticThreadPool pool(options(2, seconds(10), /*max_blocked=*/1));
  std::mutex mutex;
  std::condition_variable changed;
  bool released = false;
  std::atomic<bool> first_in{false};
  std::atomic<int> refused{0};
  std::string message;
  pool.submit([&] {
    ElasticThreadPool::BlockedScope blocked;
    first_in.store(true);
    std::unique_lock<std::mutex> lock(mutex);
    changed.wait_for(lock, seconds(20), [&] { return released; });
  });
  REQUIRE(cptest::eventually([&] { return first_in.load(); }));
  const auto started = std::chrono::steady_clock::now();
  pool.submit([&] {
    try {
      ElasticThreadPool::BlockedScope blocked;
    } catch (const EngineError& error) {
      std::lock_guard<std::mutex> lock(mutex);
      message = error.what();
      refused.fetch_add(1);
    }
  });
  CHECK(cptest::eventually([&] { return refused.load() == 1; }));
  CHECK(std::chrono::steady_clock::now() - started < seconds(5));
  {
    std::lock_guard<std::mutex> lock(mutex);
    CHECK(message.find("max_blocked_pool_threads") != std::string::npos);
    released = true;
  }
  changed.notify_all();
  // The pool recovers: nobody blocked, and a nested wait is allowed again.
  CHECK(cptest::eventually([&] { return pool.blocked_threads() == 0; }));
  std::atomic<bool> again{false};
  pool.submit([&] {
    ElasticThreadPool::BlockedScope blocked;
    again.store(true);
  });
  CHECK(cptest::eventually([&] { return again.load(); }));
}

// ---- stacks (issue 7, defect 16) ------------------------------------------------------

TEST(pool_threads_get_the_main_thread_stack) {
  const std::size_t expected = thread_stack_size();
  CHECK(expected >= std::size_t{2} << 20);
  std::atomic<std::size_t> seen{0};
  ElasticThreadPool pool(options(2, seconds(10)));
  pool.submit([&] { seen.store(cptest::current_stack_size()); });
  REQUIRE(cptest::eventually([&] { return seen.load() != 0; }));
  CHECK(seen.load() >= expected);
}

TEST(pool_blocked_scopes_nest) {
  ElasticThreadPool pool(options(2, seconds(10), /*max_blocked=*/1));
  std::atomic<int> inner_blocked{-1};
  std::atomic<bool> done{false};
  pool.submit([&] {
    ElasticThreadPool::BlockedScope outer;
    {
      ElasticThreadPool::BlockedScope inner;  // would exceed max_blocked if it counted
      inner_blocked.store(static_cast<int>(pool.blocked_threads()));
    }
    done.store(true);
  });
  CHECK(cptest::eventually([&] { return done.load(); }));
  CHECK_EQ(inner_blocked.load(), 1);
  CHECK(cptest::eventually([&] { return pool.blocked_threads() == 0; }));
}

// Waiters back from their nested wait outnumber the cap while idle stand-ins remain: a
// task submitted then must run as soon as the surplus drains, not after the idle timeout
// (a stand-in woken for it must not retire and leave it stranded).
TEST(pool_surplus_threads_do_not_strand_a_task) {
  constexpr int kWaiters = 4;
  ElasticThreadPool pool(options(2, seconds(30), 16));
  std::mutex mutex;
  std::condition_variable changed;
  bool released = false;
  std::atomic<int> woke{0};
  for (int i = 0; i < kWaiters; ++i) {
    pool.submit([&] {
      {
        ElasticThreadPool::BlockedScope blocked;
        std::unique_lock<std::mutex> lock(mutex);
        changed.wait_for(lock, seconds(20), [&] { return released; });
      }
      woke.fetch_add(1);
      std::this_thread::sleep_for(milliseconds(300));  // back at work, over the cap
    });
  }
  REQUIRE(cptest::eventually([&] { return pool.blocked_threads() == kWaiters; }));
  // Stand-ins start only for queued work; give them some, then let them idle.
  std::atomic<int> fillers{0};
  for (int i = 0; i < 3; ++i) pool.submit([&] { fillers.fetch_add(1); });
  REQUIRE(cptest::eventually([&] { return fillers.load() == 3; }));
  REQUIRE(cptest::eventually([&] { return pool.idle_threads() >= 1; }));
  {
    std::lock_guard<std::mutex> lock(mutex);
    released = true;
  }
  changed.notify_all();
  REQUIRE(cptest::eventually([&] { return woke.load() == kWaiters; }));
  std::atomic<bool> ran{false};
  const auto submitted = std::chrono::steady_clock::now();
  pool.submit([&] { ran.store(true); });
  CHECK(cptest::eventually([&] { return ran.load(); }, milliseconds(20000)));
  CHECK(std::chrono::steady_clock::now() - submitted < seconds(5));
  pool.stop();
  CHECK(pool.join(milliseconds(10000)));
}
