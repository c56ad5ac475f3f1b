#pragma once
// Values an agent can return to steer its run instead of just producing output:
// Routed (deliver the output to some successors only) and Delegation (the result is a
// child graph's result). Both are built by the pattern builders in Python.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/compiled_graph.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

struct FailedInput {
  py::object error;
};

struct Routed {
  py::object value;
  std::vector<std::string> routes;
};

struct Delegation {
  std::shared_ptr<CompiledGraph> graph;
  py::object input;
  std::shared_ptr<Agent> then;
};

// What an agent returned, converted while the GIL is held so it can be delivered after
// the GIL is released.
struct AgentResult {
  enum class Kind { Value, Routed, Delegated };
  Kind kind = Kind::Value;
  Payload value;
  std::vector<std::string> routes;
  std::shared_ptr<CompiledGraph> graph;
  std::shared_ptr<Agent> then;
  Usage usage;  // from counterpoint.Result(usage=...)
  std::chrono::steady_clock::time_point finished_at{};  // see Outcome::finished_at
};

AgentResult interpret_result(py::object result);  // requires the GIL
// Requires the GIL. What an agent that raised `error` reports: a question for a person
// (NeedsInput) when `error` is counterpoint's interrupt (cp.interrupt), else `failure`.
Outcome raised_outcome(py::handle error, Failure failure);
// Resolves `completion` with what the agent returned. A delegation's child run is
// cancelled if `cancellation` fires (a timeout abandoning the invocation).
void deliver(Completion& completion, AgentResult result,
             const std::shared_ptr<CancelToken>& cancellation = nullptr);

void register_results(py::module_& m);

}  // namespace counterpoint::bindings
