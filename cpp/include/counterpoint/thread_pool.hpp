#pragma once
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace counterpoint {

// Plain threads for agent work that blocks (sync LLM calls, HTTP, sleeps), so no oneTBB
// worker ever waits on it. Elastic: a submitted task never waits for a busy thread while
// fewer than max_threads exist; threads idle longer than idle_timeout exit.
class ElasticThreadPool {
 public:
  struct Options {
    std::size_t max_threads = 1024;
    std::chrono::milliseconds idle_timeout{10000};
  };

  explicit ElasticThreadPool(Options options);
  ElasticThreadPool() : ElasticThreadPool(Options{}) {}
  // Stops the pool and waits for its threads to finish their current task.
  ~ElasticThreadPool();
  ElasticThreadPool(const ElasticThreadPool&) = delete;
  ElasticThreadPool& operator=(const ElasticThreadPool&) = delete;

  // Throws EngineError once stopped.
  void submit(std::function<void()> task);
  // Runs on each pool thread as it exits (the bindings drop the thread's interpreter state).
  void set_thread_exit_hook(std::function<void()> hook);
  // No new tasks; queued tasks still run; idle threads exit.
  void stop();
  // Waits up to `timeout` for every thread to exit. True if they all did.
  bool join(std::chrono::milliseconds timeout);

  std::size_t threads() const;
  std::size_t idle_threads() const;
  std::size_t queued() const;

 private:
  void worker_loop();

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable all_exited_;
  std::deque<std::function<void()>> tasks_;
  std::function<void()> exit_hook_;
  std::size_t threads_ = 0;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace counterpoint
