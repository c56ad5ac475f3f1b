#include "counterpoint/limiter.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "counterpoint/timer_queue.hpp"

namespace counterpoint {

Limiter::Limiter(std::string name, std::uint32_t max_concurrent, double per_second, double burst)
    : name_(std::move(name)),
      max_concurrent_(max_concurrent),
      per_second_(per_second),
      burst_(burst > 0 ? burst : 1.0),
      tokens_(burst > 0 ? burst : 1.0),
      refilled_at_(Clock::now()) {
  if (!(per_second >= 0) || !std::isfinite(per_second)) {
    throw std::invalid_argument("limit '" + name_ + "': per_second must be a finite number >= 0");
  }
}

void Limiter::refill_locked(Clock::time_point now) {
  if (per_second_ <= 0) return;
  const double elapsed = std::chrono::duration<double>(now - refilled_at_).count();
  tokens_ = std::min(burst_, tokens_ + elapsed * per_second_);
  refilled_at_ = now;
}

std::deque<std::function<void()>> Limiter::take_ready_locked(Clock::time_point now) {
  std::deque<std::function<void()>> ready;
  refill_locked(now);
  while (!waiting_.empty()) {
    if (max_concurrent_ > 0 && running_ >= max_concurrent_) break;
    if (per_second_ > 0 && tokens_ < 1.0) break;
    if (per_second_ > 0) tokens_ -= 1.0;
    ++running_;
    ++granted_;
    max_running_seen_ = std::max(max_running_seen_, running_);
    ready.push_back(std::move(waiting_.front().second));
    waiting_.pop_front();
  }
  if (!waiting_.empty()) schedule_refill_locked(now);
  return ready;
}

void Limiter::schedule_refill_locked(Clock::time_point now) {
  // Only the rate can free a waiting call with time alone; slots free on release().
  if (per_second_ <= 0 || tokens_ >= 1.0 || refill_scheduled_) return;
  if (max_concurrent_ > 0 && running_ >= max_concurrent_) return;
  refill_scheduled_ = true;
  const double wait = (1.0 - tokens_) / per_second_;
  TimerQueue::instance().schedule(
      now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(wait)),
      [weak = weak_from_this()] {
        auto self = weak.lock();
        if (!self) return;
        std::deque<std::function<void()>> ready;
        {
          std::lock_guard<std::mutex> lock(self->mutex_);
          self->refill_scheduled_ = false;
          ready = self->take_ready_locked(Clock::now());
        }
        for (auto& start : ready) start();
      });
}

std::uint64_t Limiter::acquire(std::function<void()> granted) {
  std::deque<std::function<void()>> ready;
  std::uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ticket = next_ticket_++;
    waiting_.emplace_back(ticket, std::move(granted));
    ready = take_ready_locked(Clock::now());
  }
  for (auto& start : ready) start();
  return ticket;
}

bool Limiter::withdraw(std::uint64_t ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = std::find_if(waiting_.begin(), waiting_.end(),
                            [&](const auto& entry) { return entry.first == ticket; });
  if (found == waiting_.end()) return false;
  waiting_.erase(found);
  return true;
}

void Limiter::release() {
  std::deque<std::function<void()>> ready;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (running_ > 0) --running_;
    ready = take_ready_locked(Clock::now());
  }
  for (auto& start : ready) start();
}

Limiter::Snapshot Limiter::snapshot() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return Snapshot{running_, waiting_.size(), granted_, max_running_seen_};
}

}  // namespace counterpoint
