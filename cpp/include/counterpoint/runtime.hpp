#pragma once
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "counterpoint/thread_pool.hpp"

namespace counterpoint {

// Process-wide state shared by every compiled graph: the oneTBB arena the flow graphs
// run in, the pool for blocking agent work, and the registry of live runs that shutdown
// cancels. One per process, because the Python module and every graph in it share it;
// like Taskflow's Executor it is an explicit object with options, but it is configured
// (optionally) before first use rather than passed to each run. Created on first use and
// never destroyed: threads still finishing agent work at process exit must not find it
// gone.
class Runtime {
 public:
  struct Options {
    // oneTBB workers running the flow graphs; 0 = COUNTERPOINT_WORKERS if set, else all
    // cores but one (at least one).
    int workers = 0;
    // Pool threads running blocking agent work at once.
    std::size_t max_pool_threads = 1024;
    // Pool threads that may be blocked at once waiting for nested runs (an agent calling
    // another graph's invoke); one more such wait fails with EngineError. See
    // ElasticThreadPool::BlockedScope.
    std::size_t max_blocked_pool_threads = 2048;
    // Idle pool threads exit after this long.
    std::chrono::milliseconds pool_idle_timeout{10000};
    // Stack size of every engine thread (oneTBB workers, pool threads) in bytes;
    // 0 = the main thread's (thread_stack_size()).
    std::size_t stack_size = 0;
  };

  // Sets the options the runtime starts with. Only before first use: throws EngineError
  // once the runtime has started (any graph compiled or run).
  static void configure(const Options& options);
  // True once the runtime exists (configure() is then too late).
  static bool started() noexcept;
  static Runtime& instance();

  // The options in effect, with defaults resolved (workers and stack_size never 0).
  const Options& options() const noexcept { return options_; }
  ElasticThreadPool& pool() noexcept { return *pool_; }

  bool accepting() const noexcept { return accepting_.load(std::memory_order_acquire); }
  // Stops intake (new runs throw EngineError), cancels every live run, stops the pool
  // and waits up to `drain_timeout` for agent invocations still executing to return.
  // True if everything drained in time.
  bool shutdown(std::chrono::milliseconds drain_timeout);
  // The first step of shutdown() alone: stops intake and interrupts every live run, while
  // the pool keeps serving the agents still running.
  void interrupt_all();

  std::size_t live_runs() const;
  std::size_t inflight_invocations() const noexcept {
    return inflight_.load(std::memory_order_acquire);
  }
  // True on a thread executing one of the engine's oneTBB tasks (an inline agent): such
  // a thread must never wait for a run, or the engine could run out of workers.
  static bool on_engine_thread() noexcept;
  // Marks the current thread as running engine work (a oneTBB task of the engine's) for
  // its lifetime.
  class EngineWork {
   public:
    EngineWork() noexcept;
    ~EngineWork();
    EngineWork(const EngineWork&) = delete;
    EngineWork& operator=(const EngineWork&) = delete;
  };
  // oneTBB's version as loaded at run time, e.g. "2023.2.0", and its interface number.
  static const char* tbb_runtime_version() noexcept;
  static int tbb_runtime_interface_version() noexcept;
  static int tbb_compiled_interface_version() noexcept;

  // Engine internals (defined in cpp/src/detail, not installed).
  class Impl;
  Impl& impl() noexcept { return *impl_; }
  void invocation_started() noexcept { inflight_.fetch_add(1, std::memory_order_acq_rel); }
  void invocation_finished() noexcept { inflight_.fetch_sub(1, std::memory_order_acq_rel); }

 private:
  explicit Runtime(const Options& options);
  const Options options_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<ElasticThreadPool> pool_;
  std::atomic<bool> accepting_{true};
  std::atomic<std::size_t> inflight_{0};
};

}  // namespace counterpoint
