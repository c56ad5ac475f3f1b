#include "counterpoint/thread_pool.hpp"

#include <cxxabi.h>

#include <thread>

#include "counterpoint/errors.hpp"

namespace counterpoint {

ElasticThreadPool::ElasticThreadPool(Options options) : options_(options) {
  if (options_.max_threads == 0) options_.max_threads = 1;
}

ElasticThreadPool::~ElasticThreadPool() {
  stop();
  std::unique_lock<std::mutex> lock(mutex_);
  all_exited_.wait(lock, [&] { return threads_ == 0; });
}

void ElasticThreadPool::submit(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) throw EngineError("the thread pool is stopped; no new agent work is accepted");
  tasks_.push_back(std::move(task));
  // Every queued task needs a thread of its own: an idle one, or a new one while the
  // pool is below its cap. Otherwise a blocking agent would hold back its siblings.
  if (tasks_.size() > idle_ && threads_ < options_.max_threads) {
    ++threads_;
    lock.unlock();
    try {
      std::thread([this] { worker_loop(); }).detach();
    } catch (...) {
      lock.lock();
      --threads_;
      if (threads_ == 0) {
        // No thread will ever pick the task up: give it back to the caller.
        tasks_.pop_back();
        throw;
      }
    }
    return;
  }
  work_ready_.notify_one();
}

void ElasticThreadPool::worker_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      try {
        task();
      } catch (abi::__forced_unwind&) {
        throw;  // the interpreter is ending this thread; let it unwind
      } catch (...) {
        // A task owns its error reporting (an unresolved Completion fails its agent when
        // destroyed), so a throw here has already been accounted for.
      }
      task = nullptr;
      lock.lock();
      continue;
    }
    if (stopping_) break;
    ++idle_;
    const bool woke = work_ready_.wait_for(lock, options_.idle_timeout,
                                           [&] { return !tasks_.empty() || stopping_; });
    --idle_;
    if (!woke) break;
  }
  std::function<void()> hook = exit_hook_;
  lock.unlock();
  if (hook) hook();
  lock.lock();
  --threads_;
  if (threads_ == 0) all_exited_.notify_all();
}

void ElasticThreadPool::set_thread_exit_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  exit_hook_ = std::move(hook);
}

void ElasticThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
}

bool ElasticThreadPool::join(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return all_exited_.wait_for(lock, timeout, [&] { return threads_ == 0; });
}

std::size_t ElasticThreadPool::threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_;
}

std::size_t ElasticThreadPool::idle_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_;
}

std::size_t ElasticThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_.size();
}

}  // namespace counterpoint
