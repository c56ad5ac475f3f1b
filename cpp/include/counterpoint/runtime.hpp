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
// cancels. Created on first use and never destroyed: threads still finishing agent work
// at process exit must not find it gone.
class Runtime {
 public:
  static Runtime& instance();

  ElasticThreadPool& pool() noexcept { return *pool_; }

  bool accepting() const noexcept { return accepting_.load(std::memory_order_acquire); }
  // Stops intake (new runs throw EngineError), cancels every live run, stops the pool
  // and waits up to `drain_timeout` for agent invocations still executing to return.
  // True if everything drained in time.
  bool shutdown(std::chrono::milliseconds drain_timeout);

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

  // Engine internals.
  class Impl;
  Impl& impl() noexcept { return *impl_; }
  void invocation_started() noexcept { inflight_.fetch_add(1, std::memory_order_acq_rel); }
  void invocation_finished() noexcept { inflight_.fetch_sub(1, std::memory_order_acq_rel); }

 private:
  Runtime();
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<ElasticThreadPool> pool_;
  std::atomic<bool> accepting_{true};
  std::atomic<std::size_t> inflight_{0};
};

}  // namespace counterpoint
