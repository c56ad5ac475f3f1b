#pragma once
// Starting and waiting for runs from Python (register_runs.cpp).
#include <chrono>
#include <memory>
#include <string>

#include <pybind11/pybind11.h>

#include "counterpoint/compiled_graph.hpp"
#include "loop_dispatcher.hpp"
#include "py_agents.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// Spinning this long before sleeping is cheaper than a sleep and a wake-up.
constexpr std::chrono::microseconds kWaitSpin{50};

inline std::chrono::nanoseconds seconds_of(double seconds) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::duration<double>(seconds));
}

// How to start one run, as Python describes it.
struct RunRequest {
  py::object input;
  std::shared_ptr<LoopDispatcher> dispatcher;  // the loop for coroutine agents; may be null
  EventKinds record_events;  // none: the run keeps no event queue
  py::object budget = py::none();  // {usage name: limit}
  double deadline = 0.0;
  py::object restored = py::none();  // a list of Restored outcomes, or None
  std::shared_ptr<NodeHook> hook;  // checkpoints of a durable run
  std::string key;                 // a durable run's key
  py::object observer = py::none();  // told of every agent call (observer.hpp)
  // The events are read on the dispatcher's loop (astream), which is told of them.
  bool announce_events = false;
};

// A run start_stream started, with the first events it took (an EventBatch).
struct StartedStream {
  RunHandle handle;
  py::object events;
};

// Requires the GIL. The run's agents run in `context`, or, when it is null, in the
// caller's current contextvars context, observed by the request's observer.
RunOptions run_options(const CompiledGraph& graph, const RunRequest& request,
                       std::shared_ptr<RunContext> context = nullptr);

// Requires the GIL. Options for a plain run: not durable, not observed.
RunOptions plain_run_options(const CompiledGraph& graph, py::object input,
                             std::shared_ptr<LoopDispatcher> dispatcher, py::object budget,
                             double deadline, EventKinds record_events = {},
                             bool announce_events = false);

// A thread that must never wait for a run: an inline agent on an engine thread, or the
// engine's own event loop. Throws EngineError (cancelling `run`, if given).
void refuse_wait_on_engine_thread(RunHandle run);

// Waits for the run with the GIL released, in slices, checking for signals between them:
// on a signal (KeyboardInterrupt) the run is interrupted and the exception propagates.
// True once the run has ended; false if `timeout_seconds` (< 0: none) passed.
bool wait_run(RunHandle run, double timeout_seconds);

}  // namespace counterpoint::bindings
