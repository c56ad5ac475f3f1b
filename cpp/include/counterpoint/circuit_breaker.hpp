#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

namespace counterpoint {

// Stops calling something that keeps failing. Closed: calls go through and failures
// are counted; `failure_threshold` failures within `window` open it. Open: calls fail
// fast until `reset_timeout` has passed; then half-open: one probe call goes through,
// and its success closes the breaker, its failure opens it again. Thread-safe; share one
// breaker between agents that use the same resource.
class CircuitBreaker {
 public:
  enum class State : std::uint8_t { Closed, Open, HalfOpen };
  using Clock = std::chrono::steady_clock;

  struct Snapshot {
    State state;
    std::size_t recent_failures;  // within the window
    std::uint64_t total_failures;
    std::uint64_t total_successes;
    std::uint64_t rejected;       // calls refused while open
    double seconds_until_probe;   // Open: time left before a probe is allowed; else 0
  };

  // Throws std::invalid_argument for a threshold < 1 or non-positive durations.
  CircuitBreaker(std::string name, std::uint32_t failure_threshold, double window_seconds,
                 double reset_timeout_seconds);

  // May a call start now? In half-open state only one probe is let through at a time.
  bool allow();
  void record_success();
  void record_failure();
  // A call let through by allow() that ended without a verdict (cancelled): frees the
  // probe slot without changing the state.
  void record_abandoned();

  Snapshot snapshot() const;
  const std::string& name() const noexcept { return name_; }
  std::uint32_t failure_threshold() const noexcept { return threshold_; }
  double window_seconds() const noexcept { return window_.count(); }
  double reset_timeout_seconds() const noexcept { return reset_timeout_.count(); }

 private:
  void trim(Clock::time_point now);

  const std::string name_;
  const std::uint32_t threshold_;
  const std::chrono::duration<double> window_;
  const std::chrono::duration<double> reset_timeout_;
  mutable std::mutex mutex_;
  State state_ = State::Closed;
  std::deque<Clock::time_point> failures_;
  Clock::time_point opened_at_{};
  bool probe_in_flight_ = false;
  std::uint64_t total_failures_ = 0;
  std::uint64_t total_successes_ = 0;
  std::uint64_t rejected_ = 0;
};

const char* to_string(CircuitBreaker::State state) noexcept;

}  // namespace counterpoint
