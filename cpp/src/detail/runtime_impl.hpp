#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <memory>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>

#include "counterpoint/runtime.hpp"

namespace counterpoint {
namespace detail {
struct RunState;
}

class Runtime::Impl {
 public:
  explicit Impl(const Runtime::Options& options);
  tbb::task_arena& arena() noexcept { return arena_; }

  // Runs `work` on the reaper thread, which exists so that destructions that wait (a flow
  // graph waiting for its tasks) never run on a thread those tasks may wait for.
  void reap(std::function<void()> work);

  void register_run(const std::shared_ptr<detail::RunState>& run);
  void unregister_run(std::uint64_t run_id);
  std::vector<std::shared_ptr<detail::RunState>> live_runs() const;
  std::size_t live_count() const;

 private:
  // The waiting Python thread never joins the arena (it must stay free to notice
  // Ctrl-C), so no slot is reserved for it; the workers take all cores but one (see
  // engine_workers in runtime.cpp).
  tbb::global_control parallelism_;
  // oneTBB workers get the main thread's stack, so an inline agent recurses as deep as
  // the same code on the main thread; set before the arena starts any worker.
  tbb::global_control stack_size_;
  tbb::task_arena arena_;
  mutable std::mutex mutex_;
  std::unordered_map<std::uint64_t, std::weak_ptr<detail::RunState>> runs_;

  void reaper_loop();
  std::mutex reap_mutex_;
  std::condition_variable reap_ready_;
  std::deque<std::function<void()>> reap_queue_;
  bool reaper_started_ = false;
};

}  // namespace counterpoint
