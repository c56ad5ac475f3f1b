#pragma once
// Hands coroutine agents to an asyncio event loop without taking the GIL on oneTBB
// workers: invocations go into a native queue and an eventfd wakes the loop, whose
// reader callback (the Python side, see counterpoint/_loops.py) takes the whole batch.
// The same queue tells the loop when a run ends, so it can cancel the run's leftover
// tasks and wake an `ainvoke` awaiting it.
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_set>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;
class PyRef;

class LoopDispatcher final : public RunObserver,
                             public std::enable_shared_from_this<LoopDispatcher> {
 public:
  // Events recorded for a run wake the loop `event_gather_seconds` after the first of a
  // batch, or sooner when anything else wakes it (0: at once).
  explicit LoopDispatcher(double event_gather_seconds = 0.0);
  ~LoopDispatcher() override;

  void submit(std::shared_ptr<const PyRef> function, Invocation invocation);
  void on_run_finished(const RunHandle& run) override;
  void on_event_recorded(std::uint64_t run_id) override;

  int fileno() const noexcept { return event_fd_; }
  // With the GIL: everything queued since the last call (a LoopWork), or None if
  // nothing was.
  py::object take();
  // With the GIL: the one queued call, if it is all that is queued, is of run `run_id`
  // and may not be cancelled on its own (an AsyncCall, taken); else None, nothing taken.
  py::object continuation(std::uint64_t run_id);
  // The loop is going away: fail what is queued and refuse what comes later.
  void close();

 private:
  struct Start {
    std::shared_ptr<const PyRef> function;
    Invocation invocation;
    std::uint64_t id;  // 0 unless the invocation can be cancelled on its own
  };
  // With the GIL: the AsyncCall that runs `start` (its input made, its call observed).
  py::object call_of(Start& start);
  void wake_locked();
  // Everything signalled is being taken: the eventfd is read if it was written.
  void taken_locked();
  void events_due();  // the gather window of recorded events has passed

  int event_fd_ = -1;
  std::mutex mutex_;
  std::vector<Start> starts_;
  std::vector<std::uint64_t> ends_;  // runs that ended
  // Runs that handed this loop a coroutine since they started: their end may leave
  // tasks to cancel.
  std::unordered_set<std::uint64_t> coroutine_runs_;
  std::vector<std::uint64_t> event_runs_;
  std::vector<std::uint64_t> cancels_;
  std::uint64_t next_id_ = 1;
  const double event_gather_seconds_;
  bool events_due_scheduled_ = false;  // events_due() will run
  bool signalled_ = false;  // something is queued that take() has not taken
  bool fd_armed_ = false;   // the eventfd was written and not read since
  bool closed_ = false;
};



}  // namespace counterpoint::bindings
