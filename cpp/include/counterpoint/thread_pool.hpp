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
// fewer than max_threads are running tasks; threads idle longer than idle_timeout exit.
//
// A task may itself wait for work that needs this pool (an agent invoking another graph).
// Such a wait goes through BlockedScope: while it lasts the thread does not count against
// max_threads, so the work it waits for still gets a thread (like a managed blocker).
// Past max_blocked such waits, a further one fails at once instead of exhausting the
// process, so nested waits can neither deadlock the pool nor grow it without bound.
class ElasticThreadPool {
 public:
  struct Options {
    // Threads running tasks at once (threads blocked in a BlockedScope excluded).
    std::size_t max_threads = 1024;
    // Threads that may be blocked in nested waits at once; 0 = none may block.
    std::size_t max_blocked = 2048;
    std::chrono::milliseconds idle_timeout{10000};
    // Stack size of each pool thread in bytes; 0 = the main thread's (thread_stack_size()).
    std::size_t stack_size = 0;
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
  // Threads currently inside a BlockedScope.
  std::size_t blocked_threads() const;
  const Options& options() const noexcept { return options_; }

  // The pool whose task the calling thread is running, or null.
  static ElasticThreadPool* current() noexcept;

  // Brackets a wait on the calling thread for work that may need the pool (a nested run).
  // On a pool thread the thread stops counting against max_threads for the scope's
  // lifetime, and the pool starts a thread for queued work if it has none; elsewhere it
  // does nothing. Scopes nest: only the outermost one on a thread counts (an embedder
  // may hold one across a whole sliced wait). Throws EngineError (naming the limit and
  // the fix) when max_blocked threads are already blocked, or when no thread can be
  // started to stand in.
  class BlockedScope {
   public:
    BlockedScope();
    ~BlockedScope();
    BlockedScope(const BlockedScope&) = delete;
    BlockedScope& operator=(const BlockedScope&) = delete;

   private:
    ElasticThreadPool* pool_;  // the pool this scope counts against, if it counts
  };

 private:
  void worker_loop();
  // Starts a thread if queued work has none to run it; called with `lock` held.
  void grow_locked(std::unique_lock<std::mutex>& lock);
  std::size_t running_locked() const noexcept { return threads_ - blocked_; }
  void enter_blocked();
  void leave_blocked();

  Options options_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable all_exited_;
  std::deque<std::function<void()>> tasks_;
  std::function<void()> exit_hook_;
  std::size_t threads_ = 0;  // threads that can take work
  std::size_t exiting_ = 0;  // threads running their exit hook
  std::size_t idle_ = 0;
  std::size_t blocked_ = 0;
  bool stopping_ = false;
};

// The stack size engine threads get (oneTBB workers, pool threads, the timer and reaper
// threads): the main thread's (RLIMIT_STACK), so recursion that works on the main thread
// also works in an agent; 64 MiB when that limit is unlimited; at most 1 GiB.
std::size_t thread_stack_size() noexcept;

}  // namespace counterpoint
