// Compiled graphs and runs. All waiting happens here with the GIL released, in slices,
// so Ctrl-C is noticed (and cancels the run) within one slice.
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <pybind11/stl.h>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "loop_dispatcher.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

using namespace std::chrono_literals;
constexpr auto kWaitSlice = 20ms;
// Spinning this long before sleeping is cheaper than a sleep and a wake-up.
constexpr auto kSpin = 50us;

// An inline agent runs on a oneTBB worker; waiting there for a run could leave the
// engine without workers to finish it. `run` (if any) is cancelled.
void refuse_on_engine_thread(RunHandle run = {}) {
  SyncAgent::note_wait_for_run();
  if (!Runtime::on_engine_thread()) return;
  if (run) run.cancel();
  throw EngineError(
      "an agent running inline on an engine thread waited for a run (invoke, batch or "
      "wait), which could stall the engine; add the graph itself as an agent instead, or "
      "give this agent dispatch='thread'");
}

// Waits for the run with the GIL released, in slices, checking for signals between
// them: on a signal (KeyboardInterrupt) the run is cancelled and the exception
// propagates. The first slice spins briefly, as most runs of small agents end within
// tens of microseconds. True once the run has ended; false if `timeout_seconds` passed.
bool wait_run(RunHandle run, double timeout_seconds) {
  refuse_on_engine_thread(run);
  const auto deadline = timeout_seconds < 0
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(timeout_seconds));
  auto spin = std::chrono::nanoseconds(kSpin);
  for (;;) {
    bool finished;
    {
      py::gil_scoped_release nogil;
      finished = run.wait_for(kWaitSlice, spin);
    }
    spin = std::chrono::nanoseconds(0);
    drain_released_objects();
    if (finished) return true;
    if (PyErr_CheckSignals() != 0) {
      run.cancel();
      throw py::error_already_set();
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

py::dict succeeded_outputs(const RunHandle& run) {
  py::dict outputs;
  for (const NodeOutcome& outcome : run.outcomes()) {
    if (outcome.status == NodeStatus::Succeeded) {
      outputs[py::str(outcome.name.data(), outcome.name.size())] = from_payload(outcome.output);
    }
  }
  return outputs;
}

py::dict usage_dict(const Usage& usage) {
  py::dict out;
  for (const auto& [name, amount] : usage) out[py::str(name)] = amount;
  return out;
}

// (True, value) for a succeeded run; otherwise (False, details), a dict with "status",
// "run_id", "outputs" (of the agents that succeeded), "usage", "budget_exhausted" and,
// by status: failed -> "agent", "error", "message", "kind" (agent may be None when no
// sink produced output); needs_review -> "pending": [(agent, output, reason, confidence)].
py::tuple run_result(const RunHandle& run) {
  const RunStatus status = run.status();
  if (status == RunStatus::Running) {
    throw std::logic_error("run_result called on a run still running");
  }
  if (status == RunStatus::Succeeded) {
    auto sinks = run.sink_outputs();
    // The shape follows the graph: one sink gives its output, several give a dict (even
    // if only some of them produced output this time).
    if (run.sink_count() == 1) return py::make_tuple(true, from_payload(sinks.front().second));
    py::dict by_name;
    for (const auto& [name, value] : sinks) {
      by_name[py::str(name.data(), name.size())] = from_payload(value);
    }
    return py::make_tuple(true, std::move(by_name));
  }
  py::dict details;
  details["status"] = to_string(status);
  details["run_id"] = run.id();
  details["usage"] = usage_dict(run.usage());
  details["budget_exhausted"] = run.budget_exhausted();
  py::dict outputs;
  py::list pending;
  for (const NodeOutcome& outcome : run.outcomes()) {
    py::str name(outcome.name.data(), outcome.name.size());
    if (outcome.status == NodeStatus::Succeeded) outputs[name] = from_payload(outcome.output);
    if (outcome.status == NodeStatus::NeedsReview) {
      pending.append(py::make_tuple(name, from_payload(outcome.output), outcome.failure.message,
                                    outcome.confidence < 0 ? py::object(py::none())
                                                           : py::object(py::float_(outcome.confidence))));
    }
  }
  details["outputs"] = outputs;
  details["pending"] = pending;
  details["agent"] = py::none();
  if (status == RunStatus::Failed) {
    if (const auto node = run.failed_node()) {
      const NodeOutcome failed = *run.outcome(*node);
      details["agent"] = py::str(failed.name.data(), failed.name.size());
      details["error"] = from_payload(failed.failure.error);
      details["message"] = failed.failure.message;
      details["kind"] = to_string(failed.failure.kind);
    } else {
      details["error"] = py::none();
      details["message"] = run.budget_exhausted()
                               ? "the run's budget was spent before any result was produced"
                               : "the run produced no output: every sink was skipped";
      details["kind"] = run.budget_exhausted() ? "budget" : "no_output";
    }
  }
  return py::make_tuple(false, std::move(details));
}

Usage usage_from(const py::object& mapping) {
  Usage usage;
  if (mapping.is_none()) return usage;
  for (auto item : py::reinterpret_borrow<py::dict>(mapping)) {
    usage.emplace_back(py::str(item.first), item.second.cast<double>());
  }
  return usage;
}

// Python's description of a run: see CompiledGraph.start below.
struct RunRequest {
  py::object input;
  std::shared_ptr<LoopDispatcher> dispatcher;
  bool record_events = false;
  py::object budget = py::none();
  double deadline = 0.0;
  py::object restored = py::none();  // [(agent, kind, value, routes[, usage])]
  std::shared_ptr<NodeHook> hook;
  std::string key;
};

RunOptions make_options(const CompiledGraph& graph, RunRequest request) {
  RunOptions options;
  options.input = to_payload(std::move(request.input));
  if (request.dispatcher) {
    options.context = request.dispatcher;
    options.context_observer = request.dispatcher;
  }
  options.record_events = request.record_events;
  options.budget = usage_from(request.budget);
  options.deadline_seconds = request.deadline;
  // A checkpoint hook also records how the run ends.
  options.observer = std::dynamic_pointer_cast<RunObserver>(request.hook);
  options.node_hook = std::move(request.hook);
  options.key = std::move(request.key);
  if (!request.restored.is_none()) {
    for (py::handle item : request.restored) {
      auto row = py::reinterpret_borrow<py::tuple>(item);
      const std::string name = row[0].cast<std::string>();
      const std::int64_t node = graph.plan().find(name);
      if (node < 0) throw py::value_error("cannot restore unknown agent '" + name + "'");
      const std::string kind = row[1].cast<std::string>();
      Restored known;
      known.node = static_cast<std::uint32_t>(node);
      if (kind == "succeeded") {
        known.outcome = Outcome::success(to_payload(py::reinterpret_borrow<py::object>(row[2])));
        if (!row[3].is_none()) {
          known.outcome.routed = true;
          known.outcome.routes = row[3].cast<std::vector<std::string>>();
        }
        // Restored agents keep counting against the run's budget.
        if (row.size() > 4) known.outcome.usage = usage_from(py::reinterpret_borrow<py::object>(row[4]));
      } else if (kind == "rejected") {
        known.outcome = Outcome::failed(
            Failure{row[2].cast<std::string>(), {}, FailureKind::Rejected});
      } else {
        throw py::value_error("cannot restore agent '" + name + "' as '" + kind + "'");
      }
      options.restored.push_back(std::move(known));
    }
  }
  return options;
}

// Counts finished runs of a batch.
// Collects the ids of a batch's runs as they finish.
class BatchObserver final : public RunObserver {
 public:
  void on_run_finished(const RunHandle& run) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      finished_.push_back(run.id());
    }
    changed_.notify_all();
  }
  // Waits up to `timeout` for finished runs and moves their ids into `out`.
  void take(std::vector<std::uint64_t>& out, std::chrono::nanoseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !finished_.empty(); });
    out.insert(out.end(), finished_.begin(), finished_.end());
    finished_.clear();
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<std::uint64_t> finished_;
};

// Runs one run per input, at most `max_concurrency` at once (0: all). Each run's result
// is converted, and its state freed, as soon as it finishes, so memory follows the runs
// in flight rather than the size of the batch.
py::list run_batch(CompiledGraph& graph, const py::list& inputs,
                   const std::shared_ptr<LoopDispatcher>& dispatcher, std::size_t max_concurrency,
                   const py::object& budget_limits, double deadline) {
  refuse_on_engine_thread();
  const Usage budget = usage_from(budget_limits);
  const std::size_t total = inputs.size();
  std::vector<Payload> payloads;
  payloads.reserve(total);
  for (py::handle input : inputs) {
    payloads.push_back(to_payload(py::reinterpret_borrow<py::object>(input)));
  }
  if (max_concurrency == 0 || max_concurrency > total) max_concurrency = total;

  auto observer = std::make_shared<BatchObserver>();
  std::vector<RunHandle> runs(total);
  std::vector<py::object> results(total);
  std::unordered_map<std::uint64_t, std::size_t> index_of;
  std::vector<std::uint64_t> finished;
  std::size_t started = 0;
  std::size_t in_flight = 0;
  std::size_t converted = 0;
  while (converted < total) {
    {
      py::gil_scoped_release nogil;
      while (started < total && in_flight < max_concurrency) {
        RunOptions options;
        options.input = std::move(payloads[started]);
        options.context = dispatcher;
        options.context_observer = dispatcher;
        options.observer = observer;
        options.budget = budget;
        options.deadline_seconds = deadline;
        runs[started] = graph.start(std::move(options));
        index_of.emplace(runs[started].id(), started);
        ++started;
        ++in_flight;
      }
      observer->take(finished, kWaitSlice);
    }
    for (std::uint64_t id : finished) {
      const auto found = index_of.find(id);
      const std::size_t index = found->second;
      index_of.erase(found);
      results[index] = run_result(runs[index]);
      runs[index] = RunHandle();
      --in_flight;
      ++converted;
    }
    finished.clear();
    drain_released_objects();
    if (converted < total && PyErr_CheckSignals() != 0) {
      for (RunHandle& run : runs) {
        if (run) run.cancel();
      }
      throw py::error_already_set();
    }
  }
  py::list out;
  for (py::object& result : results) out.append(std::move(result));
  return out;
}

JoinMode parse_join(const std::string& name) {
  if (name == "all") return JoinMode::All;
  if (name == "any") return JoinMode::Any;
  if (name == "available") return JoinMode::Available;
  if (name == "settled") return JoinMode::Settled;
  throw py::value_error("join must be 'all', 'any', 'available' or 'settled', not '" + name + "'");
}

ErrorMode parse_error_mode(const std::string& name) {
  if (name == "inherit") return ErrorMode::Inherit;
  if (name == "fail") return ErrorMode::FailRun;
  if (name == "continue") return ErrorMode::Continue;
  throw py::value_error("on_error must be 'inherit', 'fail' or 'continue', not '" + name + "'");
}

py::tuple event_tuple(const Event& event) {
  return py::make_tuple(to_string(event.kind), event.agent,
                        event.run_id, event.seconds, from_payload(event.payload), event.message,
                        event.priority);
}

}  // namespace

void register_graph(py::module_& m) {
  // GraphError carries the node name; the Python layer turns it into cp.GraphError.
  static PyObject* invalid_graph =
      PyErr_NewException("counterpoint._core.InvalidGraph", PyExc_ValueError, nullptr);
  m.add_object("InvalidGraph", py::reinterpret_borrow<py::object>(invalid_graph));
  py::register_local_exception_translator([](std::exception_ptr error) {
    try {
      if (error) std::rethrow_exception(error);
    } catch (const GraphError& e) {
      PyErr_SetObject(invalid_graph, py::make_tuple(e.what(), e.node()).ptr());
    }
  });
  py::register_exception<EngineError>(m, "EngineError", PyExc_RuntimeError);

  py::class_<RunHandle>(m, "RunHandle")
      .def_property_readonly("id", &RunHandle::id)
      .def_property_readonly("key", &RunHandle::key)
      .def_property_readonly("status", [](const RunHandle& run) { return to_string(run.status()); })
      .def_property_readonly("done", &RunHandle::done)
      .def_property_readonly("elapsed", &RunHandle::elapsed)
      .def("wait", &wait_run, py::arg("timeout") = -1.0,
           "Waits for the run to end (timeout < 0: no limit). True once it has ended.")
      .def("cancel", &RunHandle::cancel, py::call_guard<py::gil_scoped_release>())
      .def("result", &run_result)
      .def("outcomes",
           [](const RunHandle& run) {
             py::list rows;
             for (const NodeOutcome& o : run.outcomes()) {
               py::dict row;
               row["name"] = py::str(o.name.data(), o.name.size());
               row["status"] = to_string(o.status);
               row["output"] = from_payload(o.output);
               row["error"] = o.failure.message;
               row["error_kind"] = to_string(o.failure.kind);
               row["started"] = o.started;
               row["finished"] = o.finished;
               row["routes"] = o.routes;
               row["usage"] = usage_dict(o.usage);
               row["skip_reason"] = o.skip_reason;
               row["confidence"] = o.confidence;
               row["restored"] = o.restored;
               rows.append(std::move(row));
             }
             return rows;
           })
      .def("next_events",
           [](RunHandle& run, double timeout_seconds) {
             if (timeout_seconds > 0) refuse_on_engine_thread(run);
             std::vector<Event> events;
             bool more;
             {
               py::gil_scoped_release nogil;
               more = run.next_events(
                   events, std::chrono::duration_cast<std::chrono::nanoseconds>(
                               std::chrono::duration<double>(timeout_seconds)));
             }
             py::list out;
             for (const Event& event : events) out.append(event_tuple(event));
             events.clear();
             drain_released_objects();
             return py::make_tuple(std::move(out), more);
           },
           py::arg("timeout"))
      .def("trace_json", &RunHandle::trace_json)
      .def("usage", [](const RunHandle& run) { return usage_dict(run.usage()); })
      .def_property_readonly("budget_exhausted", &RunHandle::budget_exhausted);

  py::class_<CompiledGraph, std::shared_ptr<CompiledGraph>>(m, "CompiledGraph")
      .def(py::init([](const py::list& nodes, const std::string& on_error) {
             GraphSpec spec;
             spec.on_error = parse_error_mode(on_error);
             for (py::handle item : nodes) {
               auto [name, agent, after, priority, join, node_on_error] =
                   item.cast<std::tuple<std::string, std::shared_ptr<Agent>,
                                        std::vector<std::string>, int, std::string,
                                        std::string>>();
               // The engine's priority is optional (an explicit 0 no longer inherits);
               // until the Python layer passes None for "unset", 0 keeps meaning unset.
               NodeSpec& node = spec.add(std::move(name), std::move(agent), std::move(after),
                                         priority == 0 ? std::nullopt : std::optional<int>(priority));
               node.join = parse_join(join);
               node.on_error = parse_error_mode(node_on_error);
             }
             // Wiring enters the engine's arena, which may wait for a worker that is busy
             // running an agent and needs the GIL.
             py::gil_scoped_release nogil;
             return CompiledGraph::compile(spec);
           }),
           py::arg("nodes"), py::arg("on_error") = "fail")
      .def_property_readonly("names",
                             [](const CompiledGraph& g) {
                               std::vector<std::string> names;
                               for (const auto& node : g.plan().nodes()) names.push_back(node.name);
                               return names;
                             })
      .def("plan_json", [](const CompiledGraph& g) { return g.plan().to_json(); })
      .def(
          "invoke",
          [](CompiledGraph& graph, py::object input,
             const std::shared_ptr<LoopDispatcher>& dispatcher, py::object budget,
             double deadline, py::object restored, std::shared_ptr<NodeHook> hook) {
            RunOptions options = make_options(
                graph, RunRequest{std::move(input), dispatcher, false, std::move(budget),
                                  deadline, std::move(restored), std::move(hook), {}});
            RunHandle run;
            {
              py::gil_scoped_release nogil;
              run = graph.start(std::move(options));
            }
            wait_run(run, -1.0);
            return run_result(run);
          },
          py::arg("input"), py::arg("dispatcher") = nullptr, py::arg("budget") = py::none(),
          py::arg("deadline") = 0.0, py::arg("restored") = py::none(),
          py::arg("hook") = nullptr)
      .def(
          "start",
          [](CompiledGraph& graph, py::object input,
             const std::shared_ptr<LoopDispatcher>& dispatcher, bool record_events,
             py::object budget, double deadline, py::object restored,
             std::shared_ptr<NodeHook> hook, std::string key) {
            RunOptions options = make_options(
                graph, RunRequest{std::move(input), dispatcher, record_events, std::move(budget),
                                  deadline, std::move(restored), std::move(hook), std::move(key)});
            py::gil_scoped_release nogil;
            return graph.start(std::move(options));
          },
          py::arg("input"), py::arg("dispatcher") = nullptr, py::arg("record_events") = false,
          py::arg("budget") = py::none(), py::arg("deadline") = 0.0,
          py::arg("restored") = py::none(), py::arg("hook") = nullptr, py::arg("key") = "")
      .def("batch", &run_batch, py::arg("inputs"), py::arg("dispatcher") = nullptr,
           py::arg("max_concurrency") = 0, py::arg("budget") = py::none(),
           py::arg("deadline") = 0.0);
}

}  // namespace counterpoint::bindings
