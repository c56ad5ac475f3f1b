#pragma once
// Run observers: Python code told when each agent call of a run starts and ends, at any
// depth (RunRequest.observer). They are how LangChain callbacks, tracing and the stream
// modes that need an agent's own context ("custom", "messages") see every agent, and
// they cost nothing to runs that have none: one null check per call.
#include <cstdint>
#include <memory>
#include <string>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/run.hpp"
#include "py_agents.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// One agent call as its run's observer sees it. `observer.agent_started(call)` may set
// context variables in `call.context` (the call's body runs in a copy of it) and keep
// its own data in `state`; `observer.agent_ended(call)` then finds the outcome filled in.
struct ObservedCall {
  std::string path;             // "<delegating agent>/<agent>" for agents of child runs
  // In a durable run: where the call's outcome is checkpointed (Completion::checkpoint_path),
  // which tells a loop's iterations apart; empty otherwise.
  std::string checkpoint_path;
  std::uint32_t attempt = 0;    // of an agent with policies: which attempt, from 1; else 0
  py::object input;             // what the agent receives
  py::object context;           // a contextvars.Context: a copy of the run's caller context
  EventChannel channel;         // the agent's own events (custom data, model chunks)
  py::object state = py::none();
  NodeStatus status = NodeStatus::Running;  // Succeeded, Failed, TimedOut, Cancelled, NeedsReview
  py::object output = py::none();
  py::object error = py::none();            // the exception, when the agent raised one
  std::string message;                      // the failure summary, or why review is needed
};

// Requires the GIL. When the invocation's run has an observer: tells it the call starts
// with `input` (what the agent receives, already made), runs the call in the context the
// observer prepared and routes the call's outcome through the observer before it reaches
// the run when the observer has an `agent_ended`. Does nothing otherwise. Never throws: an
// observer's failure leaves the call unobserved, in its run's own context. True if the
// run has an observer (the observer's work took time, whether or not it succeeded).
bool observe_call(Invocation& invocation, py::handle input);

// True when the invocation's run has an observer (no GIL needed).
inline bool has_observer(const Invocation& invocation) noexcept {
  const auto* run = static_cast<const RunContext*>(invocation.run_context.get());
  return run != nullptr && run->observer != nullptr;
}

}  // namespace counterpoint::bindings
