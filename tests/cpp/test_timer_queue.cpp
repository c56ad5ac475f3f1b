// TimerQueue: callbacks run in deadline order on the timer thread, cancellation, many
// timers at once, waking up for a timer sooner than the one it sleeps for, and callbacks
// that schedule or cancel timers themselves. Each test owns its queue, so the engine's
// own timers (TimerQueue::instance()) cannot interfere.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "counterpoint/timer_queue.hpp"
#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;
using Clock = TimerQueue::Clock;

namespace {

// Occupies the timer thread until released, so a test can schedule and cancel timers
// whose deadlines pass meanwhile without racing it: on release, everything due fires in
// deadline order. (On a loaded machine this thread may otherwise be descheduled for longer
// than any deadline a test could afford to wait for.)
class Hold {
 public:
  explicit Hold(TimerQueue& queue) {
    queue.schedule_after(0.0, [this] {
      running_.store(true);
      gate_.wait();
    });
    REQUIRE(eventually([&] { return running_.load(); }));
  }
  ~Hold() { release(); }
  void release() { gate_.open(); }

 private:
  std::atomic<bool> running_{false};
  Gate gate_;
};

}  // namespace

TEST(timer_fires_in_deadline_order) {
  CallLog log;  // outlives the queue: its destructor joins the timer thread
  TimerQueue queue;
  Hold hold(queue);
  const auto base = Clock::now() + milliseconds(30);
  // Scheduled out of order; three share a deadline and keep their scheduling order.
  queue.schedule(base + milliseconds(40), log.entry(5));
  queue.schedule(base, log.entry(1));
  queue.schedule(base + milliseconds(20), log.entry(3));
  queue.schedule(base + milliseconds(10), log.entry(2));
  queue.schedule(base + milliseconds(30), log.entry(40));
  queue.schedule(base + milliseconds(30), log.entry(41));
  queue.schedule(base + milliseconds(30), log.entry(42));
  hold.release();
  REQUIRE(eventually([&] { return log.count() == 7; }));
  CHECK_EQ(log.snapshot(), (std::vector<int>{1, 2, 3, 40, 41, 42, 5}));
  std::lock_guard<std::mutex> lock(log.mutex);
  for (const auto& id : log.threads) {
    CHECK(id == log.threads.front());  // one timer thread runs them all
    CHECK(id != std::this_thread::get_id());
  }
}

TEST(timer_never_fires_early) {
  TimerQueue queue;
  std::atomic<bool> fired{false};
  std::atomic<double> fired_after{0.0};
  const auto start = Clock::now();
  queue.schedule_after(0.08, [&] {
    fired_after.store(seconds_since(start));
    fired.store(true);
  });
  REQUIRE(eventually([&] { return fired.load(); }));
  CHECK(fired_after.load() >= 0.08);
}

TEST(timer_past_deadlines_fire_at_once_in_order) {
  CallLog log;  // outlives the queue: its destructor joins the timer thread
  TimerQueue queue;
  Hold hold(queue);
  const auto now = Clock::now();
  queue.schedule(now - milliseconds(5), log.entry(2));
  queue.schedule(now - milliseconds(10), log.entry(1));
  queue.schedule_after(-3.0, log.entry(3));  // negative delays mean "now"
  hold.release();
  REQUIRE(eventually([&] { return log.count() == 3; }));
  CHECK_EQ(log.snapshot(), (std::vector<int>{1, 2, 3}));
}

TEST(timer_cancel_before_it_fires) {
  CallLog log;  // outlives the queue: its destructor joins the timer thread
  TimerQueue queue;
  Hold hold(queue);
  const auto cancelled = queue.schedule_after(0.05, log.entry(1));
  const auto kept = queue.schedule_after(0.05, log.entry(2));
  CHECK(cancelled != kept);
  CHECK(queue.cancel(cancelled));
  CHECK(!queue.cancel(cancelled));  // only once
  CHECK(!queue.cancel(0));
  CHECK(!queue.cancel(999999999));
  // A sentinel after both: once it has run, the cancelled one would have too.
  queue.schedule_after(0.1, log.entry(3));
  hold.release();
  REQUIRE(eventually([&] { return log.count() == 2; }));
  CHECK_EQ(log.snapshot(), (std::vector<int>{2, 3}));
  CHECK(!queue.cancel(kept));  // already ran
}

TEST(timer_cancel_frees_the_callback) {
  TimerQueue queue;
  auto captured = std::make_shared<int>(1);
  std::weak_ptr<int> watch = captured;
  const auto id = queue.schedule_after(3600.0, [captured] {});
  captured.reset();
  CHECK(!watch.expired());
  CHECK(queue.cancel(id));
  CHECK(watch.expired());
}

TEST(timer_cancel_one_of_equal_deadlines) {
  CallLog log;  // outlives the queue: its destructor joins the timer thread
  TimerQueue queue;
  Hold hold(queue);
  const auto when = Clock::now() + milliseconds(40);
  queue.schedule(when, log.entry(1));
  const auto middle = queue.schedule(when, log.entry(2));
  queue.schedule(when, log.entry(3));
  CHECK(queue.cancel(middle));
  queue.schedule(when + milliseconds(20), log.entry(4));
  hold.release();
  REQUIRE(eventually([&] { return log.count() == 3; }));
  CHECK_EQ(log.snapshot(), (std::vector<int>{1, 3, 4}));
}

TEST(timer_many_timers_fire_once_each_in_order) {
  TimerQueue queue;
  constexpr int kTimers = 5000;
  std::mt19937 random(12345);
  std::uniform_int_distribution<int> offset_us(0, 100000);
  const auto base = Clock::now() + milliseconds(100);
  std::vector<Clock::time_point> deadline(kTimers);
  std::vector<TimerQueue::Id> ids(kTimers);
  std::vector<std::atomic<int>> fired(kTimers);
  std::mutex mutex;
  std::vector<Clock::time_point> fired_deadlines;
  fired_deadlines.reserve(kTimers);
  for (int i = 0; i < kTimers; ++i) {
    deadline[i] = base + std::chrono::microseconds(offset_us(random));
    ids[i] = queue.schedule(deadline[i], [&, i] {
      fired[i].fetch_add(1);
      std::lock_guard<std::mutex> lock(mutex);
      fired_deadlines.push_back(deadline[i]);
    });
  }
  int expected = kTimers;
  for (int i = 0; i < kTimers; i += 3) {
    // A cancel can lose to the timer thread only if the deadline already passed.
    if (queue.cancel(ids[i])) --expected;
  }
  // If this thread was still scheduling when the first deadlines passed, a timer
  // scheduled late may rightly fire after a later deadline that had already fired.
  const bool scheduled_in_time = Clock::now() < base;
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return static_cast<int>(fired_deadlines.size()) == expected;
  }, milliseconds(20000)));
  std::this_thread::sleep_for(milliseconds(50));  // nothing more may arrive
  std::lock_guard<std::mutex> lock(mutex);
  CHECK_EQ(static_cast<int>(fired_deadlines.size()), expected);
  if (scheduled_in_time) {
    CHECK(expected < kTimers);
    CHECK(std::is_sorted(fired_deadlines.begin(), fired_deadlines.end()));
  }
  for (int i = 0; i < kTimers; ++i) CHECK(fired[i].load() <= 1);
}

TEST(timer_sooner_timer_wakes_the_thread) {
  // The thread sleeps until a timer an hour away; a timer due in 20 ms must not wait
  // behind it.
  TimerQueue queue;
  std::atomic<bool> far_fired{false};
  std::atomic<bool> near_fired{false};
  const auto far = queue.schedule_after(3600.0, [&] { far_fired.store(true); });
  std::this_thread::sleep_for(milliseconds(20));  // let the thread settle into that sleep
  const auto start = Clock::now();
  queue.schedule_after(0.02, [&] { near_fired.store(true); });
  REQUIRE(eventually([&] { return near_fired.load(); }, milliseconds(10000)));
  CHECK(seconds_since(start) < 10.0);
  CHECK(!far_fired.load());
  CHECK(queue.cancel(far));
}

TEST(timer_later_timer_does_not_delay_a_sooner_one) {
  CallLog log;  // outlives the queue: its destructor joins the timer thread
  TimerQueue queue;
  queue.schedule_after(0.03, log.entry(1));
  queue.schedule_after(3600.0, log.entry(2));  // must not replace the 30 ms wake-up
  REQUIRE(eventually([&] { return log.count() == 1; }, milliseconds(10000)));
  CHECK_EQ(log.snapshot(), (std::vector<int>{1}));
}

TEST(timer_callbacks_may_schedule_and_cancel) {
  // The queue's lock is not held while a callback runs: a callback can schedule the next
  // timer (a chain, as retries do) and cancel another one.
  TimerQueue queue;
  std::atomic<int> chain{0};
  std::atomic<bool> done{false};
  std::function<void()> step = [&] {
    if (chain.fetch_add(1) + 1 == 100) {
      done.store(true);
    } else {
      queue.schedule_after(0.0, step);
    }
  };
  queue.schedule_after(0.0, step);
  REQUIRE(eventually([&] { return done.load(); }));
  CHECK_EQ(chain.load(), 100);

  std::atomic<bool> victim_ran{false};
  std::atomic<bool> cancelled_it{false};
  std::atomic<bool> sentinel{false};
  const auto victim = queue.schedule_after(0.1, [&] { victim_ran.store(true); });
  queue.schedule_after(0.01, [&, victim] { cancelled_it.store(queue.cancel(victim)); });
  queue.schedule_after(0.2, [&] { sentinel.store(true); });
  REQUIRE(eventually([&] { return sentinel.load(); }));
  CHECK(cancelled_it.load());
  CHECK(!victim_ran.load());
}

TEST(timer_throwing_callback_does_not_stop_the_queue) {
  TimerQueue queue;
  std::atomic<bool> after{false};
  queue.schedule_after(0.0, [] { throw std::runtime_error("timer callback failed"); });
  queue.schedule_after(0.01, [&] { after.store(true); });
  CHECK(eventually([&] { return after.load(); }));
}

TEST(timer_far_future_does_not_overflow) {
  TimerQueue queue;
  std::atomic<bool> fired{false};
  const auto id = queue.schedule_after(1e300, [&] { fired.store(true); });
  std::atomic<bool> near{false};
  queue.schedule_after(0.01, [&] { near.store(true); });
  REQUIRE(eventually([&] { return near.load(); }));
  CHECK(!fired.load());
  CHECK(queue.cancel(id));
}

TEST(timer_destruction_drops_pending_callbacks) {
  std::atomic<bool> fired{false};
  auto captured = std::make_shared<int>(1);
  std::weak_ptr<int> watch = captured;
  const auto start = Clock::now();
  {
    TimerQueue queue;
    queue.schedule_after(3600.0, [&fired, captured] { fired.store(true); });
    captured.reset();
  }
  CHECK(seconds_since(start) < 10.0);  // joined without waiting for the timer
  CHECK(!fired.load());
  CHECK(watch.expired());
}

TEST(timer_concurrent_schedulers_and_cancellers) {
  TimerQueue queue;
  std::atomic<int> fired{0};
  std::atomic<int> cancelled{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t));
      std::uniform_real_distribution<double> delay(0.0, 0.03);
      for (int i = 0; i < 500; ++i) {
        const auto id = queue.schedule_after(delay(random), [&] { fired.fetch_add(1); });
        if (i % 2 == 0 && queue.cancel(id)) cancelled.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(eventually([&] { return fired.load() + cancelled.load() == 2000; }, milliseconds(20000)));
  std::this_thread::sleep_for(milliseconds(50));
  CHECK_EQ(fired.load() + cancelled.load(), 2000);
}

TEST(timer_shared_instance_runs_callbacks) {
  // The engine's process-wide queue, as retries and deadlines use it.
  std::atomic<bool> fired{false};
  TimerQueue::instance().schedule_after(0.01, [&] { fired.store(true); });
  CHECK(eventually([&] { return fired.load(); }));
  CHECK(&TimerQueue::instance() == &TimerQueue::instance());
}
