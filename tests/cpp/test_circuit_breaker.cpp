// CircuitBreaker: closed -> open after `threshold` failures within the window, open ->
// half-open after the reset timeout, a single probe in half-open whose verdict closes or
// reopens it, trimming of old failures, abandoned probes, the counters, and the state
// machine under contention.
#include <atomic>
#include <chrono>
#include <limits>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <thread>
#include <vector>

#include "counterpoint/circuit_breaker.hpp"
#include "test_support.hpp"

namespace counterpoint {
inline std::ostream& operator<<(std::ostream& out, CircuitBreaker::State s) {
  return out << to_string(s);
}
}  // namespace counterpoint

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;
using State = CircuitBreaker::State;

namespace {

// Waits (polling the snapshot, never the clock) until an open breaker offers a probe.
bool wait_half_open(CircuitBreaker& breaker) {
  return eventually([&] { return breaker.snapshot().state == State::HalfOpen; },
                    milliseconds(10000));
}

}  // namespace

TEST(breaker_rejects_bad_arguments) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 0, 1.0, 1.0));
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 1, 0.0, 1.0));
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 1, 1.0, 0.0));
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 1, -1.0, 1.0));
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 1, nan, 1.0));
  CHECK_THROWS(std::invalid_argument, CircuitBreaker("b", 1, 1.0, nan));
  auto message = thrown<std::invalid_argument>([] { CircuitBreaker("named", 0, 1.0, 1.0); });
  REQUIRE(message.has_value());
  CHECK(contains(message->what(), "named"));
  CircuitBreaker ok("ok", 3, 2.0, 5.0);
  CHECK_EQ(ok.name(), std::string("ok"));
  CHECK_EQ(ok.failure_threshold(), 3u);
  CHECK_EQ(ok.window_seconds(), 2.0);
  CHECK_EQ(ok.reset_timeout_seconds(), 5.0);
}

TEST(breaker_starts_closed_and_lets_calls_through) {
  CircuitBreaker breaker("fresh", 2, 60.0, 60.0);
  for (int i = 0; i < 10; ++i) CHECK(breaker.allow());
  breaker.record_success();
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Closed);
  CHECK_EQ(snap.recent_failures, 0u);
  CHECK_EQ(snap.total_successes, 1u);
  CHECK_EQ(snap.total_failures, 0u);
  CHECK_EQ(snap.rejected, 0u);
  CHECK_EQ(snap.seconds_until_probe, 0.0);
}

TEST(breaker_opens_at_the_threshold_and_fails_fast) {
  CircuitBreaker breaker("threshold", 3, 60.0, 60.0);
  breaker.record_failure();
  breaker.record_failure();
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Closed);
  CHECK_EQ(snap.recent_failures, 2u);
  CHECK(breaker.allow());
  breaker.record_failure();
  snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Open);
  CHECK_EQ(snap.total_failures, 3u);
  CHECK(snap.seconds_until_probe > 50.0);
  CHECK(snap.seconds_until_probe <= 60.0);
  for (int i = 0; i < 5; ++i) CHECK(!breaker.allow());
  CHECK_EQ(breaker.snapshot().rejected, 5u);
}

TEST(breaker_counts_failures_not_streaks) {
  // Successes in between do not reset the count: it is failures within the window.
  CircuitBreaker breaker("count", 3, 60.0, 60.0);
  breaker.record_failure();
  breaker.record_success();
  breaker.record_failure();
  breaker.record_success();
  CHECK_EQ(breaker.snapshot().state, State::Closed);
  breaker.record_failure();
  CHECK_EQ(breaker.snapshot().state, State::Open);
  CHECK_EQ(breaker.snapshot().total_successes, 2u);
}

TEST(breaker_late_failure_while_open_does_not_extend_it) {
  // A call that started before the breaker opened may report its failure afterwards; it
  // is counted but must not push the probe further away.
  CircuitBreaker breaker("late", 1, 60.0, 30.0);
  breaker.record_failure();
  const double before = breaker.snapshot().seconds_until_probe;
  std::this_thread::sleep_for(milliseconds(30));
  breaker.record_failure();
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Open);
  CHECK_EQ(snap.total_failures, 2u);
  CHECK(snap.seconds_until_probe < before);
  CHECK_EQ(snap.recent_failures, 0u);  // opening cleared the window
}

TEST(breaker_half_open_lets_exactly_one_probe) {
  CircuitBreaker breaker("probe", 1, 60.0, 0.05);
  breaker.record_failure();
  CHECK(!breaker.allow());
  REQUIRE(wait_half_open(breaker));
  CHECK_EQ(breaker.snapshot().seconds_until_probe, 0.0);
  const auto rejected_before = breaker.snapshot().rejected;
  CHECK(breaker.allow());   // the probe
  CHECK(!breaker.allow());  // everyone else waits for its verdict
  CHECK(!breaker.allow());
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::HalfOpen);
  CHECK_EQ(snap.rejected, rejected_before + 2);
}

TEST(breaker_probe_success_closes) {
  CircuitBreaker breaker("close", 2, 60.0, 0.05);
  breaker.record_failure();
  breaker.record_failure();
  REQUIRE(wait_half_open(breaker));
  REQUIRE(breaker.allow());
  breaker.record_success();
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Closed);
  CHECK_EQ(snap.recent_failures, 0u);
  for (int i = 0; i < 5; ++i) CHECK(breaker.allow());
  // Closed again with a clean window: it takes the full threshold to reopen.
  breaker.record_failure();
  CHECK_EQ(breaker.snapshot().state, State::Closed);
  breaker.record_failure();
  CHECK_EQ(breaker.snapshot().state, State::Open);
}

TEST(breaker_probe_failure_reopens_for_a_full_timeout) {
  CircuitBreaker breaker("reopen", 1, 60.0, 0.2);
  breaker.record_failure();
  REQUIRE(wait_half_open(breaker));
  REQUIRE(breaker.allow());
  const auto failed_at = std::chrono::steady_clock::now();
  breaker.record_failure();
  auto snap = breaker.snapshot();
  const bool allowed = breaker.allow();
  // The first timeout has long passed, so "open" means it started over at the probe's
  // failure (unless this thread slept through a whole new timeout meanwhile).
  if (seconds_since(failed_at) < 0.15) {
    CHECK_EQ(snap.state, State::Open);
    CHECK(snap.seconds_until_probe > 0.0);
    CHECK(!allowed);
  }
  if (allowed) breaker.record_failure();
  REQUIRE(wait_half_open(breaker));
  CHECK(breaker.allow());  // a new probe after the new timeout
}

TEST(breaker_abandoned_probe_frees_the_slot) {
  CircuitBreaker breaker("abandon", 1, 60.0, 0.05);
  breaker.record_failure();
  REQUIRE(wait_half_open(breaker));
  REQUIRE(breaker.allow());
  CHECK(!breaker.allow());
  breaker.record_abandoned();  // the probe was cancelled: no verdict
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::HalfOpen);
  CHECK_EQ(snap.total_failures, 1u);
  CHECK_EQ(snap.total_successes, 0u);
  CHECK(breaker.allow());  // the next call may probe
  CHECK(!breaker.allow());
  breaker.record_success();
  CHECK_EQ(breaker.snapshot().state, State::Closed);
}

TEST(breaker_abandoned_outside_half_open_changes_nothing) {
  CircuitBreaker breaker("noop", 2, 60.0, 60.0);
  breaker.record_failure();
  breaker.record_abandoned();
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Closed);
  CHECK_EQ(snap.recent_failures, 1u);
  breaker.record_failure();
  breaker.record_abandoned();
  CHECK_EQ(breaker.snapshot().state, State::Open);
  CHECK(!breaker.allow());
}

TEST(breaker_window_forgets_old_failures) {
  // Failures older than the window no longer count towards opening it.
  CircuitBreaker breaker("window", 3, 0.3, 60.0);
  breaker.record_failure();
  breaker.record_failure();
  CHECK_EQ(breaker.snapshot().recent_failures, 2u);
  std::this_thread::sleep_for(milliseconds(500));
  CHECK_EQ(breaker.snapshot().recent_failures, 0u);
  const auto fresh = std::chrono::steady_clock::now();
  breaker.record_failure();  // trims the two stale ones: 1 of 3
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.state, State::Closed);
  CHECK_EQ(snap.recent_failures, 1u);
  CHECK_EQ(snap.total_failures, 3u);
  breaker.record_failure();
  breaker.record_failure();
  // Three within the window open it (if this thread was not descheduled past the window).
  if (seconds_since(fresh) < 0.25) CHECK_EQ(breaker.snapshot().state, State::Open);
}

TEST(breaker_to_string_names_every_state) {
  CHECK_EQ(std::string(to_string(State::Closed)), std::string("closed"));
  CHECK_EQ(std::string(to_string(State::Open)), std::string("open"));
  CHECK_EQ(std::string(to_string(State::HalfOpen)), std::string("half_open"));
}

TEST(breaker_single_probe_under_contention) {
  // Eight threads race for the probe each time the breaker turns half-open; the probe
  // always fails. At no moment may two calls be in flight, and every refusal is counted.
  CircuitBreaker breaker("race", 1, 60.0, 0.002);
  breaker.record_failure();
  std::atomic<int> in_flight{0};
  std::atomic<int> overlap{0};
  std::atomic<long> allowed{0};
  std::atomic<long> refused{0};
  const auto until = std::chrono::steady_clock::now() + milliseconds(300);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (std::chrono::steady_clock::now() < until) {
        if (breaker.allow()) {
          if (in_flight.fetch_add(1) != 0) overlap.fetch_add(1);
          allowed.fetch_add(1);
          std::this_thread::yield();
          in_flight.fetch_sub(1);
          breaker.record_failure();  // frees the probe slot only now
        } else {
          refused.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK_EQ(overlap.load(), 0);
  CHECK(allowed.load() >= 2);  // it did turn half-open repeatedly
  auto snap = breaker.snapshot();
  CHECK_EQ(snap.rejected, static_cast<std::uint64_t>(refused.load()));
  CHECK_EQ(snap.total_failures, static_cast<std::uint64_t>(allowed.load()) + 1);
  CHECK_EQ(snap.total_successes, 0u);
}

TEST(breaker_counters_add_up_under_contention) {
  // Mixed verdicts from many threads: every allowed call reports exactly once, so the
  // totals must equal what the threads counted, whatever interleaving happened.
  CircuitBreaker breaker("mixed", 3, 0.05, 0.002);
  std::atomic<long> allowed{0};
  std::atomic<long> refused{0};
  std::atomic<long> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 3000; ++i) {
        if (!breaker.allow()) {
          refused.fetch_add(1);
          continue;
        }
        allowed.fetch_add(1);
        if ((i + t) % 3 == 0) {
          failed.fetch_add(1);
          breaker.record_failure();
        } else if ((i + t) % 7 == 0) {
          breaker.record_abandoned();
        } else {
          breaker.record_success();
        }
        if (i % 50 == 0) (void)breaker.snapshot();
      }
    });
  }
  for (auto& t : threads) t.join();
  auto snap = breaker.snapshot();
  CHECK_EQ(allowed.load() + refused.load(), 6L * 3000L);
  CHECK_EQ(snap.rejected, static_cast<std::uint64_t>(refused.load()));
  CHECK_EQ(snap.total_failures, static_cast<std::uint64_t>(failed.load()));
  CHECK(snap.total_failures + snap.total_successes <= static_cast<std::uint64_t>(allowed.load()));
  CHECK(snap.recent_failures <= 3u);
}
