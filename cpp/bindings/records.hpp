#pragma once
// The typed records that cross the pybind11 boundary. Each one is a plain struct the
// Python layer reads by attribute; statuses and kinds travel as the engine's enums
// (bound as Python enums by register_enums in records.cpp), so no status string is spelled on both sides.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/event.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// Why an agent failed: the engine's Failure with its error object made Python.
struct FailureInfo {
  std::string message;
  py::object error;  // the exception the agent raised; None for engine-made failures
  FailureKind kind = FailureKind::Error;
};

// An agent output that awaits a human decision.
struct PendingReview {
  std::string agent;
  py::object output;
  std::string reason;
  std::optional<double> confidence;
};

// How a finished run ended, all a caller needs to return its result or raise.
// A succeeded run fills only `ok`, `status` and `output`: that is the hot path of every
// invoke, so it allocates nothing else.
struct RunReport {
  std::uint64_t run_id = 0;
  bool ok = false;                    // status == Succeeded
  RunStatus status = RunStatus::Running;
  py::object output;                  // Succeeded: the result, shaped by the graph's sinks
  std::optional<std::string> failed_agent;  // Failed: the agent whose failure ended it
  std::optional<FailureInfo> failure;       // Failed, when an agent failed
  py::object outputs;                 // not Succeeded: {agent: output} of those that succeeded
  std::vector<PendingReview> pending; // NeedsReview
  py::object usage;                   // not Succeeded: the run's usage totals
  bool budget_exhausted = false;
};

// How one agent of a run ended (RunHandle.outcomes()).
struct AgentRecord {
  std::string name;
  NodeStatus status = NodeStatus::Pending;
  py::object output;
  std::optional<FailureInfo> failure;
  std::optional<double> started;
  std::optional<double> finished;
  std::vector<std::string> routes;
  py::dict usage;
  std::string reason;  // Skipped: why; NeedsReview: why it awaits review
  std::optional<double> confidence;
  bool restored = false;
};

// A run that ended, as told to whoever watches runs (event loops, checkpoint writers).
struct RunEnd {
  std::uint64_t run_id = 0;
  std::string key;
  RunStatus status = RunStatus::Running;
};

// All of these require the GIL.
py::dict usage_to_python(const Usage& usage);
Usage usage_from_python(const py::handle& mapping);  // None or {name: number}
FailureInfo failure_info(const Failure& failure);
RunReport run_report(const RunHandle& run);
// An ended run's output if it succeeded (as run_report(run).output), else its RunReport.
py::object output_or_report(const RunHandle& run);
std::vector<AgentRecord> agent_records(const RunHandle& run);
}  // namespace counterpoint::bindings
