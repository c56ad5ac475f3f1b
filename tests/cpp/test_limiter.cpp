// Limiter: the concurrency cap, the rate with its burst, withdrawing a waiting call,
// first-come-first-served grants, acquire/release pairing, and that a waiting call is a
// queued continuation rather than a blocked thread.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "counterpoint/limiter.hpp"
#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;

TEST(limiter_rejects_a_bad_rate) {
  CHECK_THROWS(std::invalid_argument, Limiter("neg", 1, -1.0, 1.0));
  CHECK_THROWS(std::invalid_argument,
               Limiter("nan", 1, std::numeric_limits<double>::quiet_NaN(), 1.0));
  CHECK_THROWS(std::invalid_argument,
               Limiter("inf", 1, std::numeric_limits<double>::infinity(), 1.0));
  auto ok = std::make_shared<Limiter>("ok", 0, 0.0, 0.0);  // no cap, no rate
  CHECK_EQ(ok->max_concurrent(), 0u);
  CHECK_EQ(ok->per_second(), 0.0);
  CHECK_EQ(ok->name(), std::string("ok"));
}

TEST(limiter_unlimited_grants_at_once) {
  auto limiter = std::make_shared<Limiter>("free", 0, 0.0, 0.0);
  CallLog log;
  for (int i = 0; i < 100; ++i) limiter->acquire(log.entry(i));
  CHECK_EQ(log.count(), 100u);
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.running, 100u);
  CHECK_EQ(snap.waiting, 0u);
  CHECK_EQ(snap.granted, 100u);
  for (int i = 0; i < 100; ++i) limiter->release();
  CHECK_EQ(limiter->snapshot().running, 0u);
}

TEST(limiter_caps_concurrency_and_grants_in_arrival_order) {
  auto limiter = std::make_shared<Limiter>("cap", 2, 0.0, 0.0);
  CallLog log;
  for (int i = 0; i < 6; ++i) limiter->acquire(log.entry(i));
  // The first two start inside acquire(), on this thread; the rest queue.
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 1}));
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.running, 2u);
  CHECK_EQ(snap.waiting, 4u);
  CHECK_EQ(snap.granted, 2u);

  // Each release starts exactly one waiting call, the oldest, on the releasing thread.
  std::thread::id releaser;
  std::thread other([&] {
    releaser = std::this_thread::get_id();
    limiter->release();
  });
  other.join();
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 1, 2}));
  {
    std::lock_guard<std::mutex> lock(log.mutex);
    CHECK(log.threads.back() == releaser);
    CHECK(log.threads.front() == std::this_thread::get_id());
  }
  for (int expected = 3; expected < 6; ++expected) {
    limiter->release();
    CHECK_EQ(log.count(), static_cast<std::size_t>(expected + 1));
    CHECK_EQ(limiter->snapshot().running, 2u);
  }
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 1, 2, 3, 4, 5}));
  limiter->release();
  limiter->release();
  snap = limiter->snapshot();
  CHECK_EQ(snap.running, 0u);
  CHECK_EQ(snap.waiting, 0u);
  CHECK_EQ(snap.granted, 6u);
  CHECK_EQ(snap.max_running_seen, 2u);
}

TEST(limiter_extra_release_creates_no_slot) {
  auto limiter = std::make_shared<Limiter>("pairing", 1, 0.0, 0.0);
  limiter->release();  // nothing held: must not underflow into a free slot
  limiter->release();
  CHECK_EQ(limiter->snapshot().running, 0u);
  CallLog log;
  limiter->acquire(log.entry(0));
  limiter->acquire(log.entry(1));
  CHECK_EQ(log.snapshot(), (std::vector<int>{0}));
  CHECK_EQ(limiter->snapshot().running, 1u);
  CHECK_EQ(limiter->snapshot().waiting, 1u);
  limiter->release();
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 1}));
  limiter->release();
  CHECK_EQ(limiter->snapshot().running, 0u);
}

TEST(limiter_withdraw_removes_only_waiting_calls) {
  auto limiter = std::make_shared<Limiter>("withdraw", 1, 0.0, 0.0);
  CallLog log;
  const auto first = limiter->acquire(log.entry(0));
  const auto second = limiter->acquire(log.entry(1));
  const auto third = limiter->acquire(log.entry(2));
  CHECK(first != second);
  CHECK(second != third);
  CHECK_EQ(limiter->snapshot().waiting, 2u);

  CHECK(!limiter->withdraw(first));  // granted already: nothing to withdraw
  CHECK(limiter->withdraw(second));
  CHECK(!limiter->withdraw(second));  // only once
  CHECK(!limiter->withdraw(987654321));
  CHECK_EQ(limiter->snapshot().waiting, 1u);

  // The withdrawn call is skipped: the slot goes to the next one in line.
  limiter->release();
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 2}));
  CHECK(!limiter->withdraw(third));
  limiter->release();
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.running, 0u);
  CHECK_EQ(snap.waiting, 0u);
  CHECK_EQ(snap.granted, 2u);
}

TEST(limiter_withdrawing_the_last_waiter_drops_its_continuation) {
  // The queued continuation owns what it captured; withdrawing must free it, or every
  // cancelled call would leak its PolicyCall.
  auto limiter = std::make_shared<Limiter>("free-capture", 1, 0.0, 0.0);
  limiter->acquire([] {});
  auto captured = std::make_shared<int>(7);
  std::weak_ptr<int> watch = captured;
  const auto ticket = limiter->acquire([captured] {});
  captured.reset();
  CHECK(!watch.expired());
  CHECK(limiter->withdraw(ticket));
  CHECK(watch.expired());
  limiter->release();
}

TEST(limiter_rate_allows_a_burst_then_spaces_calls) {
  // 20 per second with a burst of 3: three start at once, the next three follow at
  // about 50 ms intervals, from the timer thread.
  const auto created = std::chrono::steady_clock::now();
  auto limiter = std::make_shared<Limiter>("rate", 0, 20.0, 3.0);
  std::mutex mutex;
  std::vector<double> granted_at;
  std::vector<std::thread::id> threads;
  for (int i = 0; i < 6; ++i) {
    limiter->acquire([&] {
      std::lock_guard<std::mutex> lock(mutex);
      granted_at.push_back(seconds_since(created));
      threads.push_back(std::this_thread::get_id());
    });
  }
  std::size_t at_once;
  {
    std::lock_guard<std::mutex> lock(mutex);
    at_once = granted_at.size();
  }
  const auto waiting = limiter->snapshot().waiting;
  // Unless this thread was descheduled for a token's time (50 ms) while acquiring.
  if (seconds_since(created) < 0.045) {
    CHECK_EQ(at_once, 3u);
    CHECK_EQ(waiting, 3u);
  }
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return granted_at.size() == 6;
  }, milliseconds(10000)));
  std::lock_guard<std::mutex> lock(mutex);
  // A rate is a floor on spacing: grant k (k >= 3) cannot come before (k - 2) / 20 s
  // after the bucket was created full. 5 ms of slack for clock rounding.
  for (std::size_t k = 3; k < 6; ++k) {
    CHECK(granted_at[k] >= static_cast<double>(k - 2) / 20.0 - 0.005);
    CHECK(threads[k] != std::this_thread::get_id());
  }
  CHECK(std::is_sorted(granted_at.begin(), granted_at.end()));
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.granted, 6u);
  CHECK_EQ(snap.running, 6u);  // a rate-only limit still counts calls until released
  for (int i = 0; i < 6; ++i) limiter->release();
  CHECK_EQ(limiter->snapshot().running, 0u);
}

TEST(limiter_idle_time_refills_no_more_than_the_burst) {
  // 5 per second, burst 2. After 0.8 s idle the bucket would hold 4 tokens without the
  // cap; it holds 2, so the third call of a new batch must wait for the rate.
  auto limiter = std::make_shared<Limiter>("burst", 0, 5.0, 2.0);
  CallLog log;
  limiter->acquire(log.entry(0));
  limiter->acquire(log.entry(1));
  limiter->release();
  limiter->release();
  std::this_thread::sleep_for(milliseconds(800));
  const auto batch = std::chrono::steady_clock::now();
  limiter->acquire(log.entry(2));
  limiter->acquire(log.entry(3));
  limiter->acquire(log.entry(4));
  const auto right_after = log.snapshot();
  // Only meaningful if this thread was not descheduled for a whole token's time (200 ms).
  if (seconds_since(batch) < 0.15) CHECK_EQ(right_after, (std::vector<int>{0, 1, 2, 3}));
  REQUIRE(eventually([&] { return log.count() == 5; }));
  CHECK(seconds_since(batch) >= 0.2 - 0.005);
  for (int i = 0; i < 3; ++i) limiter->release();
}

TEST(limiter_rate_and_cap_together) {
  // The cap holds even when tokens are plentiful, and a freed slot with no token waits
  // for the refill timer.
  auto limiter = std::make_shared<Limiter>("both", 1, 50.0, 5.0);
  CallLog log;
  for (int i = 0; i < 4; ++i) limiter->acquire(log.entry(i));
  CHECK_EQ(log.snapshot(), (std::vector<int>{0}));
  for (int expected = 2; expected <= 4; ++expected) {
    limiter->release();  // tokens are left from the burst: the next starts at once
    CHECK_EQ(log.count(), static_cast<std::size_t>(expected));
  }
  limiter->release();
  CHECK_EQ(limiter->snapshot().max_running_seen, 1u);
  // Burst spent (4 of 5, minus refills): six more queue behind a cap of one and the rate.
  for (int i = 4; i < 10; ++i) limiter->acquire(log.entry(i));
  for (int released = 0; released < 6; ++released) {
    REQUIRE(eventually([&] { return log.count() == static_cast<std::size_t>(5 + released); }));
    CHECK_EQ(limiter->snapshot().running, 1u);
    limiter->release();
  }
  CHECK_EQ(log.snapshot(), (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.running, 0u);
  CHECK_EQ(snap.max_running_seen, 1u);
}

TEST(limiter_dropped_limiter_cancels_its_refill) {
  // Refill timers hold the limiter weakly: dropping it with calls still waiting for a
  // token neither crashes the timer thread nor runs their continuations.
  std::atomic<int> granted{0};
  auto watch_alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = watch_alive;
  {
    auto limiter = std::make_shared<Limiter>("dropped", 0, 20.0, 1.0);
    limiter->acquire([&] { granted.fetch_add(1); });
    limiter->acquire([&granted, watch_alive] { granted.fetch_add(1); });
  }
  watch_alive.reset();
  CHECK(watch.expired());  // the waiting continuation died with the limiter
  std::this_thread::sleep_for(milliseconds(150));  // past the refill (50 ms)
  CHECK_EQ(granted.load(), 1);
}

TEST(limiter_cap_holds_under_contention) {
  // Four threads acquire 200 times each; grants hand the work to two releaser threads,
  // which check the cap from the outside before releasing.
  constexpr unsigned kCap = 3;
  auto limiter = std::make_shared<Limiter>("contended", kCap, 0.0, 0.0);
  Concurrency concurrency;
  std::atomic<int> completed{0};
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<int> work;
  bool stop = false;

  auto on_grant = [&] {
    concurrency.enter();
    {
      std::lock_guard<std::mutex> lock(mutex);
      work.push_back(1);
    }
    ready.notify_one();
  };
  std::vector<std::thread> releasers;
  for (int r = 0; r < 2; ++r) {
    releasers.emplace_back([&] {
      std::unique_lock<std::mutex> lock(mutex);
      for (;;) {
        ready.wait(lock, [&] { return stop || !work.empty(); });
        if (work.empty()) return;
        work.pop_front();
        lock.unlock();
        std::this_thread::yield();
        concurrency.leave();
        completed.fetch_add(1);
        limiter->release();
        lock.lock();
      }
    });
  }
  std::vector<std::thread> acquirers;
  for (int t = 0; t < 4; ++t) {
    acquirers.emplace_back([&] {
      for (int i = 0; i < 200; ++i) limiter->acquire(on_grant);
    });
  }
  for (auto& t : acquirers) t.join();
  CHECK(eventually([&] { return completed.load() == 800; }, milliseconds(30000)));
  {
    std::lock_guard<std::mutex> lock(mutex);
    stop = true;
  }
  ready.notify_all();
  for (auto& t : releasers) t.join();
  CHECK(concurrency.most.load() <= static_cast<int>(kCap));
  auto snap = limiter->snapshot();
  CHECK_EQ(snap.running, 0u);
  CHECK_EQ(snap.waiting, 0u);
  CHECK_EQ(snap.granted, 800u);
  CHECK(snap.max_running_seen <= kCap);
  CHECK(snap.max_running_seen >= 1u);
}

TEST(limiter_waiting_calls_hold_no_thread) {
  // A thousand waiting calls are a thousand queued functions: acquire() returns at once
  // and no thread is created or blocked for them.
  auto limiter = std::make_shared<Limiter>("queue", 1, 0.0, 0.0);
  std::atomic<int> granted{0};
  limiter->acquire([&] { granted.fetch_add(1); });
  const int threads_before = process_threads();
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i) limiter->acquire([&] { granted.fetch_add(1); });
  CHECK(seconds_since(started) < 5.0);
  CHECK_EQ(limiter->snapshot().waiting, 1000u);
  CHECK_EQ(granted.load(), 1);
  const int threads_after = process_threads();
  CHECK(threads_before > 0);
  // Slack for a helper thread the runtime may start lazily meanwhile (the reaper).
  CHECK(threads_after <= threads_before + 2);
  for (int i = 0; i < 1001; ++i) limiter->release();
  CHECK_EQ(granted.load(), 1001);
  CHECK_EQ(limiter->snapshot().running, 0u);
}

TEST(limiter_waiting_agents_hold_no_pool_thread) {
  // Thirty runs of an agent capped at one concurrent call: the waiting ones are queued
  // continuations, so the blocking pool never grows by more than a thread or two (the
  // finishing call's thread is busy while it starts the next).
  auto limiter = std::make_shared<Limiter>("one-at-a-time", 1, 0.0, 0.0);
  Concurrency concurrency;
  auto slow = lambda_agent([&](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([&, shared] {
      concurrency.enter();
      std::this_thread::sleep_for(milliseconds(2));
      concurrency.leave();
      shared->completion.succeed(make(1));
    });
  });
  AgentPolicy policy;
  policy.limits = {limiter};
  GraphSpec spec;
  spec.add("limited", with_policy(slow, policy));
  auto graph = CompiledGraph::compile(spec);
  const std::size_t pool_before = Runtime::instance().pool().threads();
  std::vector<RunHandle> runs;
  for (int i = 0; i < 30; ++i) runs.push_back(start_input(graph));
  for (auto& run : runs) {
    wait_end(run);
    CHECK_EQ(run.status(), RunStatus::Succeeded);
  }
  CHECK_EQ(slow->calls(), 30);
  CHECK_EQ(concurrency.most.load(), 1);
  CHECK(Runtime::instance().pool().threads() <= pool_before + 3);
  CHECK(eventually([&] { return limiter->snapshot().running == 0; }));
  CHECK_EQ(limiter->snapshot().max_running_seen, 1u);
  CHECK_EQ(limiter->snapshot().granted, 30u);
}
