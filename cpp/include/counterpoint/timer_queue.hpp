#pragma once
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace counterpoint {

// One thread that runs callbacks at their deadlines: retry backoffs, timeouts, run
// deadlines, rate-limit refills. Callbacks must be quick and must not block; work they
// start goes to the oneTBB arena or the pool. Nothing waits on a thread in the meantime.
class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  using Id = std::uint64_t;

  static TimerQueue& instance();

  TimerQueue();
  ~TimerQueue();
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  Id schedule(Clock::time_point when, std::function<void()> callback);
  Id schedule_after(double seconds, std::function<void()> callback);
  // True if the callback had not run yet and now never will.
  bool cancel(Id id);

 private:
  void loop();

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::multimap<Clock::time_point, Id> order_;
  std::unordered_map<Id, std::pair<Clock::time_point, std::function<void()>>> timers_;
  Id next_id_ = 1;
  // When the thread next wakes by itself (max: it sleeps until notified).
  Clock::time_point wake_at_ = Clock::time_point::max();
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace counterpoint
