#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace counterpoint {

// Caps how many calls run at once and how many start per second, for one agent or for
// a named resource shared by several agents (one LLM provider), across every run in the
// process. A call that must wait does not hold a thread: its continuation is queued and
// started when a slot frees or a rate token refills.
class Limiter : public std::enable_shared_from_this<Limiter> {
 public:
  struct Snapshot {
    std::uint32_t running;
    std::size_t waiting;
    std::uint64_t granted;
    std::uint32_t max_running_seen;
  };

  // max_concurrent 0 = no cap; per_second 0 = no rate limit; burst = how many calls may
  // start back to back before the rate applies (<= 0 means 1). Always own a Limiter
  // through std::shared_ptr: refill timers hold it weakly. Throws std::invalid_argument
  // for a negative or non-finite rate.
  Limiter(std::string name, std::uint32_t max_concurrent, double per_second, double burst);

  // Runs `granted` (on this thread, or later on the timer or a releasing thread) once the
  // call may start. Each grant must be paired with one release(). Returns a ticket that
  // withdraw() can use while the call still waits.
  std::uint64_t acquire(std::function<void()> granted);
  // Removes a waiting call (its run ended); true if it was still waiting.
  bool withdraw(std::uint64_t ticket);
  void release();

  Snapshot snapshot() const;
  const std::string& name() const noexcept { return name_; }
  std::uint32_t max_concurrent() const noexcept { return max_concurrent_; }
  double per_second() const noexcept { return per_second_; }

 private:
  using Clock = std::chrono::steady_clock;
  // Takes what may start now off the queue; the caller runs them unlocked.
  std::deque<std::function<void()>> take_ready_locked(Clock::time_point now);
  void refill_locked(Clock::time_point now);
  void schedule_refill_locked(Clock::time_point now);

  const std::string name_;
  const std::uint32_t max_concurrent_;
  const double per_second_;
  const double burst_;
  mutable std::mutex mutex_;
  std::deque<std::pair<std::uint64_t, std::function<void()>>> waiting_;
  std::uint32_t running_ = 0;
  std::uint32_t max_running_seen_ = 0;
  std::uint64_t granted_ = 0;
  std::uint64_t next_ticket_ = 1;
  double tokens_;
  Clock::time_point refilled_at_;
  bool refill_scheduled_ = false;
};

}  // namespace counterpoint
