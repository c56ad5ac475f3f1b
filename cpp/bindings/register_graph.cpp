// Compiled graphs and runs. All waiting happens here with the GIL released, in slices,
// so Ctrl-C is noticed (and cancels the run) within one slice.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "gil.hpp"
#include "loop_dispatcher.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

using namespace std::chrono_literals;
constexpr auto kWaitSlice = 20ms;
// Most runs of small agents end within tens of microseconds: spinning that long is
// cheaper than a sleep and a wake-up.
constexpr auto kSpin = 50us;

// Waits for `done()` with the GIL released, checking for signals between slices.
// On a signal (KeyboardInterrupt) the runs are cancelled and the exception propagates.
template <typename Done>
bool wait_interruptibly(const std::vector<RunHandle>& runs, Done&& done, double timeout_seconds) {
  const auto deadline = timeout_seconds < 0
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(timeout_seconds));
  bool first = true;
  for (;;) {
    bool finished;
    {
      py::gil_scoped_release nogil;
      finished = done(first ? std::chrono::nanoseconds(kSpin) : std::chrono::nanoseconds(0));
    }
    first = false;
    drain_released_objects();
    if (finished) return true;
    if (PyErr_CheckSignals() != 0) {
      for (RunHandle run : runs) run.cancel();
      throw py::error_already_set();
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

bool wait_run(const RunHandle& run, double timeout_seconds) {
  return wait_interruptibly(
      {run}, [&](std::chrono::nanoseconds spin) { return run.wait_for(kWaitSlice, spin); },
      timeout_seconds);
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

// (True, value) for a succeeded run; otherwise (False, details) where details is
//   ("failed", agent, error_or_None, message, outputs_so_far, run_id)
//   ("cancelled", run_id, outputs_so_far)
py::tuple run_result(const RunHandle& run) {
  switch (run.status()) {
    case RunStatus::Succeeded: {
      auto sinks = run.sink_outputs();
      if (sinks.size() == 1) return py::make_tuple(true, from_payload(sinks.front().second));
      py::dict by_name;
      for (const auto& [name, value] : sinks) {
        by_name[py::str(name.data(), name.size())] = from_payload(value);
      }
      return py::make_tuple(true, std::move(by_name));
    }
    case RunStatus::Failed: {
      const auto node = run.failed_node();
      if (!node) {
        return py::make_tuple(
            false, py::make_tuple("failed", py::none(), py::none(),
                                  "the run produced no output: every sink was skipped",
                                  succeeded_outputs(run), run.id()));
      }
      const NodeOutcome failed = *run.outcome(*node);
      return py::make_tuple(
          false, py::make_tuple("failed", py::str(failed.name.data(), failed.name.size()),
                                from_payload(failed.failure.error), failed.failure.message,
                                succeeded_outputs(run), run.id()));
    }
    case RunStatus::Cancelled:
      return py::make_tuple(false,
                            py::make_tuple("cancelled", run.id(), succeeded_outputs(run)));
    case RunStatus::Running:
      break;
  }
  throw std::logic_error("run_result called on a run still running");
}

RunOptions make_options(py::object input, const std::shared_ptr<LoopDispatcher>& dispatcher,
                        bool record_events) {
  RunOptions options;
  options.input = to_payload(std::move(input));
  if (dispatcher) {
    options.context = dispatcher;
    options.context_observer = dispatcher;
  }
  options.record_events = record_events;
  return options;
}

// Counts finished runs of a batch.
class BatchObserver final : public RunObserver {
 public:
  void on_run_finished(const RunHandle&) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++finished_;
    }
    changed_.notify_all();
  }
  // Waits up to `timeout` for more than `seen` runs to finish; returns how many have.
  std::size_t wait_beyond(std::size_t seen, std::chrono::nanoseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return finished_ > seen; });
    return finished_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::size_t finished_ = 0;
};

py::list run_batch(CompiledGraph& graph, const py::list& inputs,
                   const std::shared_ptr<LoopDispatcher>& dispatcher, std::size_t max_concurrency) {
  const std::size_t total = inputs.size();
  std::vector<Payload> payloads;
  payloads.reserve(total);
  for (py::handle input : inputs) {
    payloads.push_back(to_payload(py::reinterpret_borrow<py::object>(input)));
  }
  if (max_concurrency == 0 || max_concurrency > total) max_concurrency = total;

  auto observer = std::make_shared<BatchObserver>();
  std::vector<RunHandle> runs;
  runs.reserve(total);
  std::size_t finished = 0;
  wait_interruptibly(
      runs,
      [&](std::chrono::nanoseconds) {
        for (;;) {
          while (runs.size() < total && runs.size() - finished < max_concurrency) {
            RunOptions options;
            options.input = std::move(payloads[runs.size()]);
            options.context = dispatcher;
            options.context_observer = dispatcher;
            options.observer = observer;
            runs.push_back(graph.start(std::move(options)));
          }
          if (finished == total) return true;
          const std::size_t now = observer->wait_beyond(finished, kWaitSlice);
          if (now == finished) return false;  // a slice passed: let the caller check signals
          finished = now;
        }
      },
      -1.0);
  py::list results;
  for (const RunHandle& run : runs) results.append(run_result(run));
  return results;
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
               rows.append(py::make_tuple(py::str(o.name.data(), o.name.size()),
                                          to_string(o.status), from_payload(o.output),
                                          o.failure.message, o.started, o.finished,
                                          o.routes));
             }
             return rows;
           })
      .def("next_events",
           [](RunHandle& run, double timeout_seconds) {
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
      .def("trace_json", &RunHandle::trace_json);

  py::class_<CompiledGraph, std::shared_ptr<CompiledGraph>>(m, "CompiledGraph")
      .def(py::init([](const py::list& nodes, const std::string& on_error) {
             GraphSpec spec;
             spec.on_error = parse_error_mode(on_error);
             for (py::handle item : nodes) {
               auto [name, agent, after, priority, join, node_on_error] =
                   item.cast<std::tuple<std::string, std::shared_ptr<Agent>,
                                        std::vector<std::string>, int, std::string,
                                        std::string>>();
               NodeSpec& node =
                   spec.add(std::move(name), std::move(agent), std::move(after), priority);
               node.join = parse_join(join);
               node.on_error = parse_error_mode(node_on_error);
             }
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
             const std::shared_ptr<LoopDispatcher>& dispatcher) {
            RunOptions options = make_options(std::move(input), dispatcher, false);
            RunHandle run;
            {
              py::gil_scoped_release nogil;
              run = graph.start(std::move(options));
            }
            wait_run(run, -1.0);
            return run_result(run);
          },
          py::arg("input"), py::arg("dispatcher") = nullptr)
      .def(
          "start",
          [](CompiledGraph& graph, py::object input,
             const std::shared_ptr<LoopDispatcher>& dispatcher, bool record_events) {
            RunOptions options = make_options(std::move(input), dispatcher, record_events);
            py::gil_scoped_release nogil;
            return graph.start(std::move(options));
          },
          py::arg("input"), py::arg("dispatcher") = nullptr, py::arg("record_events") = false)
      .def("batch", &run_batch, py::arg("inputs"), py::arg("dispatcher") = nullptr,
           py::arg("max_concurrency") = 0);
}

}  // namespace counterpoint::bindings
