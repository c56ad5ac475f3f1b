#include "records.hpp"

#include <array>
#include <optional>

#include <pybind11/native_enum.h>
#include <pybind11/stl.h>

#include "py_agents.hpp"
#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// Times and confidences use -1 for "none".
std::optional<double> if_set(double value) {
  if (value < 0) return std::nullopt;
  return value;
}

py::str str_of(std::string_view text) { return py::str(text.data(), text.size()); }

}  // namespace

py::dict usage_to_python(const Usage& usage) {
  py::dict out;
  for (const auto& [name, amount] : usage) out[py::str(name)] = amount;
  return out;
}

Usage usage_from_python(const py::handle& mapping) {
  Usage usage;
  if (mapping.is_none()) return usage;
  for (auto item : py::reinterpret_borrow<py::dict>(mapping)) {
    usage.emplace_back(py::str(item.first), item.second.cast<double>());
  }
  return usage;
}

FailureInfo failure_info(const Failure& failure) {
  return FailureInfo{failure.message, from_payload(failure.error), failure.kind};
}

py::object output_or_report(const RunHandle& run) {
  // The hot path: a succeeded run returns its output itself, so no report object is
  // made; any other end returns the RunReport, a type no agent can produce.
  if (run.status() == RunStatus::Succeeded) return run_report(run).output;
  return py::cast(run_report(run));
}

RunReport run_report(const RunHandle& run) {
  RunReport report;
  report.run_id = run.id();
  report.status = run.status();
  if (report.status == RunStatus::Running) {
    throw std::logic_error("a report was asked of a run still running");
  }
  if (report.status == RunStatus::Succeeded) {
    report.ok = true;
    // The shape follows the graph: one sink gives its output, several give a dict (even
    // if only some of them produced output this time).
    auto sinks = run.sink_outputs();
    if (run.sink_count() == 1) {
      report.output = from_payload(sinks.front().second);
    } else {
      py::dict by_name;
      for (const auto& [name, value] : sinks) by_name[str_of(name)] = from_payload(value);
      report.output = std::move(by_name);
    }
    return report;
  }
  report.output = py::none();
  report.usage = usage_to_python(run.usage());
  report.budget_exhausted = run.budget_exhausted();
  py::dict outputs;
  report.outputs = outputs;
  for (const NodeOutcome& outcome : run.outcomes()) {
    if (outcome.status == NodeStatus::Succeeded) {
      outputs[str_of(outcome.name)] = from_payload(outcome.output);
    } else if (outcome.status == NodeStatus::NeedsReview) {
      report.pending.push_back(PendingReview{std::string(outcome.name),
                                             from_payload(outcome.output),
                                             outcome.failure.message,
                                             if_set(outcome.confidence)});
    }
  }
  if (report.status == RunStatus::Failed) {
    const auto node = run.failed_node();
    if (const auto failed = node ? run.outcome(*node) : std::nullopt) {
      report.failed_agent = failed->name;
      report.failure = failure_info(failed->failure);
    }
  }
  return report;
}

std::vector<AgentRecord> agent_records(const RunHandle& run) {
  std::vector<AgentRecord> records;
  for (const NodeOutcome& o : run.outcomes()) {
    AgentRecord record;
    record.name = std::string(o.name);
    record.status = o.status;
    record.output = from_payload(o.output);
    if (o.status == NodeStatus::Failed || o.status == NodeStatus::TimedOut) {
      record.failure = failure_info(o.failure);
    }
    record.started = if_set(o.started);
    record.finished = if_set(o.finished);
    record.routes = o.routes;
    record.usage = usage_to_python(o.usage);
    if (o.status == NodeStatus::Skipped) record.reason = o.skip_reason;
    if (o.status == NodeStatus::NeedsReview) record.reason = o.failure.message;
    record.confidence = if_set(o.confidence);
    record.restored = o.restored;
    records.push_back(std::move(record));
  }
  return records;
}

void register_enums(py::module_& m) {
  // Member names are the public spellings ("succeeded", "timed_out" ...): Python reads
  // `.name` instead of keeping its own copy of the strings.
  py::native_enum<RunStatus>(m, "RunStatus", "enum.Enum", "How a run stands or ended.")
      .value("running", RunStatus::Running)
      .value("succeeded", RunStatus::Succeeded)
      .value("failed", RunStatus::Failed)
      .value("cancelled", RunStatus::Cancelled)
      .value("timed_out", RunStatus::TimedOut)
      .value("needs_review", RunStatus::NeedsReview)
      .value("interrupted", RunStatus::Interrupted)
      .value("needs_input", RunStatus::NeedsInput)
      .finalize();
  py::native_enum<NodeStatus>(m, "NodeStatus", "enum.Enum", "How one agent of a run stands or ended.")
      .value("not_started", NodeStatus::Pending)
      .value("running", NodeStatus::Running)
      .value("succeeded", NodeStatus::Succeeded)
      .value("failed", NodeStatus::Failed)
      .value("cancelled", NodeStatus::Cancelled)
      .value("skipped", NodeStatus::Skipped)
      .value("timed_out", NodeStatus::TimedOut)
      .value("needs_review", NodeStatus::NeedsReview)
      .value("needs_input", NodeStatus::NeedsInput)
      .finalize();
  py::native_enum<FailureKind>(m, "FailureKind", "enum.Enum", "Why an agent failed.")
      .value("error", FailureKind::Error)
      .value("timeout", FailureKind::Timeout)
      .value("circuit_open", FailureKind::CircuitOpen)
      .value("rejected", FailureKind::Rejected)
      .value("budget", FailureKind::Budget)
      .finalize();
  py::native_enum<EventKind>(m, "EventKind", "enum.Enum", "What happened to an agent.")
      .value("start", EventKind::Start)
      .value("finish", EventKind::Finish)
      .value("error", EventKind::Error)
      .value("cancel", EventKind::Cancel)
      .value("skip", EventKind::Skip)
      .value("review", EventKind::Review)
      .value("custom", EventKind::Custom)
      .value("message", EventKind::Message)
      .value("queued", EventKind::Queued)
      .value("attempt", EventKind::Attempt)
      .value("retry", EventKind::Retry)
      .value("fallback", EventKind::Fallback)
      .value("reviewing", EventKind::Reviewing)
      .value("input", EventKind::Input)
      .finalize();
  py::native_enum<JoinMode>(m, "JoinMode", "enum.Enum", "When an agent with several predecessors runs.")
      .value("all", JoinMode::All)
      .value("any", JoinMode::Any)
      .value("available", JoinMode::Available)
      .value("settled", JoinMode::Settled)
      .finalize();
  // `continue` is a Python keyword, so these are spelled as in the engine; Python maps
  // its on_error strings onto them in _spec.py.
  py::native_enum<ErrorMode>(m, "ErrorMode", "enum.Enum", "What an agent's failure does to its run.")
      .value("inherit", ErrorMode::Inherit)
      .value("fail_run", ErrorMode::FailRun)
      .value("continue_run", ErrorMode::Continue)
      .finalize();
  py::native_enum<Dispatch>(m, "Dispatch", "enum.Enum", "Where a plain callable runs.")
      .value("auto", Dispatch::Auto)
      .value("inline", Dispatch::Inline)
      .value("thread", Dispatch::Thread)
      .finalize();
}

void register_records(py::module_& m) {
  py::class_<FailureInfo>(m, "FailureInfo", "Why an agent failed.")
      .def_readonly("message", &FailureInfo::message)
      .def_readonly("error", &FailureInfo::error)
      .def_readonly("kind", &FailureInfo::kind);
  py::class_<PendingReview>(m, "PendingReview", "An agent output awaiting a human decision.")
      .def_readonly("agent", &PendingReview::agent)
      .def_readonly("output", &PendingReview::output)
      .def_readonly("reason", &PendingReview::reason)
      .def_readonly("confidence", &PendingReview::confidence);
  py::class_<RunReport>(m, "RunReport", "How a finished run ended.")
      .def_readonly("run_id", &RunReport::run_id)
      .def_readonly("ok", &RunReport::ok)
      .def_readonly("status", &RunReport::status)
      .def_readonly("output", &RunReport::output)
      .def_readonly("failed_agent", &RunReport::failed_agent)
      .def_readonly("failure", &RunReport::failure)
      .def_readonly("outputs", &RunReport::outputs)
      .def_readonly("pending", &RunReport::pending)
      .def_readonly("usage", &RunReport::usage)
      .def_readonly("budget_exhausted", &RunReport::budget_exhausted);
  py::class_<AgentRecord>(m, "AgentRecord", "How one agent of a run ended.")
      .def_readonly("name", &AgentRecord::name)
      .def_readonly("status", &AgentRecord::status)
      .def_readonly("output", &AgentRecord::output)
      .def_readonly("failure", &AgentRecord::failure)
      .def_readonly("started", &AgentRecord::started)
      .def_readonly("finished", &AgentRecord::finished)
      .def_readonly("routes", &AgentRecord::routes)
      .def_readonly("usage", &AgentRecord::usage)
      .def_readonly("reason", &AgentRecord::reason)
      .def_readonly("confidence", &AgentRecord::confidence)
      .def_readonly("restored", &AgentRecord::restored);
  py::class_<RunEnd>(m, "RunEnd", "A run that ended.")
      .def_readonly("run_id", &RunEnd::run_id)
      .def_readonly("key", &RunEnd::key)
      .def_readonly("status", &RunEnd::status);
}

}  // namespace counterpoint::bindings
