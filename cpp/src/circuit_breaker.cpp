#include "counterpoint/circuit_breaker.hpp"

#include <stdexcept>

namespace counterpoint {

const char* to_string(CircuitBreaker::State state) noexcept {
  switch (state) {
    case CircuitBreaker::State::Closed: return "closed";
    case CircuitBreaker::State::Open: return "open";
    case CircuitBreaker::State::HalfOpen: return "half_open";
  }
  return "unknown";
}

CircuitBreaker::CircuitBreaker(std::string name, std::uint32_t failure_threshold,
                               double window_seconds, double reset_timeout_seconds)
    : name_(std::move(name)),
      threshold_(failure_threshold),
      window_(window_seconds),
      reset_timeout_(reset_timeout_seconds) {
  if (failure_threshold < 1) {
    throw std::invalid_argument("circuit breaker '" + name_ + "': failures must be at least 1");
  }
  if (!(window_seconds > 0) || !(reset_timeout_seconds > 0)) {
    throw std::invalid_argument("circuit breaker '" + name_ +
                                "': window and reset_after must be positive numbers of seconds");
  }
}

void CircuitBreaker::trim(Clock::time_point now) {
  while (!failures_.empty() && now - failures_.front() > window_) failures_.pop_front();
}

bool CircuitBreaker::allow() {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = Clock::now();
  if (state_ == State::Open && now - opened_at_ >= reset_timeout_) {
    state_ = State::HalfOpen;
    probe_in_flight_ = false;
  }
  switch (state_) {
    case State::Closed:
      return true;
    case State::HalfOpen:
      if (!probe_in_flight_) {
        probe_in_flight_ = true;
        return true;
      }
      break;
    case State::Open:
      break;
  }
  ++rejected_;
  return false;
}

void CircuitBreaker::record_success() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++total_successes_;
  if (state_ == State::HalfOpen) {
    state_ = State::Closed;
    failures_.clear();
    probe_in_flight_ = false;
  }
}

void CircuitBreaker::record_failure() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++total_failures_;
  const auto now = Clock::now();
  if (state_ == State::HalfOpen) {
    state_ = State::Open;
    opened_at_ = now;
    probe_in_flight_ = false;
    return;
  }
  if (state_ == State::Open) return;  // a call that started before it opened
  failures_.push_back(now);
  trim(now);
  if (failures_.size() >= threshold_) {
    state_ = State::Open;
    opened_at_ = now;
    failures_.clear();
  }
}

void CircuitBreaker::record_abandoned() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (state_ == State::HalfOpen) probe_in_flight_ = false;
}

CircuitBreaker::Snapshot CircuitBreaker::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  const auto now = Clock::now();
  Snapshot snap{state_, 0, total_failures_, total_successes_, rejected_, 0.0};
  for (const auto& at : failures_) snap.recent_failures += (now - at <= window_) ? 1 : 0;
  if (state_ == State::Open) {
    const double left =
        std::chrono::duration<double>(reset_timeout_ - (now - opened_at_)).count();
    if (left <= 0) {
      snap.state = State::HalfOpen;  // the next call will be the probe
    } else {
      snap.seconds_until_probe = left;
    }
  }
  return snap;
}

}  // namespace counterpoint
