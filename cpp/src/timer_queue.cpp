#include "counterpoint/timer_queue.hpp"

#include <algorithm>

namespace counterpoint {

TimerQueue& TimerQueue::instance() {
  // Leaked like the Runtime: late callbacks may fire while static destructors run.
  static TimerQueue* queue = new TimerQueue();
  return *queue;
}

TimerQueue::TimerQueue() : thread_([this] { loop(); }) {}

TimerQueue::~TimerQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

TimerQueue::Id TimerQueue::schedule(Clock::time_point when, std::function<void()> callback) {
  Id id;
  bool sooner;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    id = next_id_++;
    timers_.emplace(id, std::make_pair(when, std::move(callback)));
    order_.emplace(when, id);
    // Wake the thread only if it would otherwise sleep past this timer: a timeout
    // scheduled per call must not cost a context switch per call.
    sooner = when < wake_at_;
    if (sooner) wake_at_ = when;
  }
  if (sooner) changed_.notify_one();
  return id;
}

TimerQueue::Id TimerQueue::schedule_after(double seconds, std::function<void()> callback) {
  // Beyond ~30 years the clock arithmetic would overflow; such a timer never fires anyway.
  constexpr double kFarFuture = 1e9;
  const auto delay = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(std::clamp(seconds, 0.0, kFarFuture)));
  return schedule(Clock::now() + delay, std::move(callback));
}

bool TimerQueue::cancel(Id id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto found = timers_.find(id);
  if (found == timers_.end()) return false;
  auto range = order_.equal_range(found->second.first);
  for (auto it = range.first; it != range.second; ++it) {
    if (it->second == id) {
      order_.erase(it);
      break;
    }
  }
  timers_.erase(found);
  return true;
}

void TimerQueue::loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!stopping_) {
    if (order_.empty()) {
      wake_at_ = Clock::time_point::max();
      changed_.wait(lock);
      continue;
    }
    const auto next = order_.begin();
    if (next->first > Clock::now()) {
      // A copy: wait_until reads its deadline again after waking, when cancel() may have
      // erased the map node it would otherwise point into.
      const Clock::time_point wake = next->first;
      wake_at_ = wake;
      changed_.wait_until(lock, wake);
      continue;
    }
    const Id id = next->second;
    order_.erase(next);
    auto found = timers_.find(id);
    std::function<void()> callback = std::move(found->second.second);
    timers_.erase(found);
    lock.unlock();
    try {
      callback();
    } catch (...) {
      // A timer callback has nobody to report to; callbacks handle their own errors.
    }
    callback = nullptr;
    lock.lock();
  }
}

}  // namespace counterpoint
