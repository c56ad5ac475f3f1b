// Runs: starting them, waiting for them and reading how they ended. All waiting happens
// here with the GIL released, in slices, so Ctrl-C is noticed (and interrupts the run)
// within one slice.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <pybind11/stl.h>

#include "counterpoint/batch.hpp"
#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "loop_dispatcher.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "events.hpp"
#include "records.hpp"
#include "register.hpp"
#include "runs.hpp"

namespace counterpoint::bindings {

namespace {

using namespace std::chrono_literals;
constexpr auto kWaitSlice = 20ms;
// A batch's caller wakes for this many finished runs at a time (or after a slice): each
// wake takes the GIL from the threads running agents, so one per run would make them
// queue for it once per run.
constexpr std::size_t kReportGroup = 64;

// Set on the thread that runs the engine's own event loop (see _loops.py).
thread_local bool t_engine_loop_thread = false;
// Python runs signal handlers on the main thread only: other threads need not wake up to
// check for Ctrl-C, which matters when a thousand pool threads wait in nested invokes.
unsigned long g_main_thread = 0;

// An outcome known before a run starts: a checkpointed success, a reviewer's rejection,
// or a question still unanswered (the agent keeps waiting without being called again).
struct RestoredSpec {
  enum class Kind : std::uint8_t { Succeeded, Rejected, AwaitsInput };
  std::string agent;  // its checkpoint path: a name, or "<delegating agent>/<agent>" below
  Kind kind = Kind::Succeeded;
  py::object output = py::none();                  // AwaitsInput: the question
  std::optional<std::vector<std::string>> routes;  // a router's chosen successors
  py::object usage = py::none();                   // keeps counting against the budget
  std::string reason;                              // rejected, awaits input: why
};

}  // namespace

void refuse_wait_on_engine_thread(RunHandle run) {
  SyncAgent::note_wait_for_run();
  if (t_engine_loop_thread) {
    if (run) run.cancel();
    throw EngineError(
        "a coroutine agent waited for a run (invoke, batch, stream or wait) on the event "
        "loop that runs counterpoint's coroutine agents, which would block every one of "
        "them; inside `async def` agents use `await graph.ainvoke(x)` (or abatch/astream), "
        "or add the graph itself as an agent");
  }
  if (!Runtime::on_engine_thread()) return;
  if (run) run.cancel();
  throw EngineError(
      "an agent running inline on an engine thread waited for a run (invoke, batch or "
      "wait), which could stall the engine; add the graph itself as an agent instead, or "
      "give this agent dispatch='thread'");
}

namespace {

// Calls `callback()` with the GIL once the run has ended: at once if it has, else on
// the pool, since the thread that ends a run (a timer, an agent's) must not wait for
// the GIL.
void call_when_ended(const RunHandle& run, py::object callback) {
  if (run.done()) {
    callback();
    return;
  }
  auto held = std::make_shared<const PyRef>(std::move(callback));
  run.when_ended([held] {
    call_python_on_pool([held] { held->get()(); }, "counterpoint: a callback for a run's end");
  });
}

}  // namespace

RunOptions plain_run_options(const CompiledGraph& graph, py::object input,
                             std::shared_ptr<LoopDispatcher> dispatcher, py::object budget,
                             double deadline, EventKinds record_events,
                             bool announce_events) {
  return run_options(graph, RunRequest{std::move(input), std::move(dispatcher), record_events,
                                       std::move(budget), deadline, py::none(), nullptr, {},
                                       py::none(), announce_events});
}

bool wait_run(RunHandle run, double timeout_seconds) {
  if (run.done()) {
    drain_released_objects();
    return true;  // nothing to wait for, on any thread
  }
  refuse_wait_on_engine_thread(run);
  const auto deadline = timeout_seconds < 0
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(timeout_seconds));
  auto spin = std::chrono::nanoseconds(kWaitSpin);
  const bool sees_signals = PyThread_get_thread_ident() == g_main_thread;
  for (;;) {
    bool finished;
    {
      py::gil_scoped_release nogil;
      if (sees_signals) {
        finished = run.wait_for(kWaitSlice, spin);
      } else if (timeout_seconds < 0) {
        run.wait();
        finished = true;
      } else {
        finished = run.wait_for(std::max(deadline - std::chrono::steady_clock::now(),
                                         std::chrono::steady_clock::duration::zero()),
                                spin);
      }
    }
    spin = std::chrono::nanoseconds(0);
    drain_released_objects();
    if (finished) return true;
    if (PyErr_CheckSignals() != 0) {
      run.interrupt();
      throw py::error_already_set();
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

namespace {

Outcome restored_outcome(const RestoredSpec& spec) {
  Outcome outcome;
  switch (spec.kind) {
    case RestoredSpec::Kind::Succeeded:
      outcome = Outcome::success(to_payload(spec.output));
      if (spec.routes) {
        outcome.routed = true;
        outcome.routes = *spec.routes;
      }
      outcome.usage = usage_from_python(spec.usage);
      break;
    case RestoredSpec::Kind::Rejected:
      outcome = Outcome::failed(Failure{spec.reason, {}, FailureKind::Rejected});
      break;
    case RestoredSpec::Kind::AwaitsInput:
      outcome = Outcome::needs_input(to_payload(spec.output), spec.reason);
      break;
  }
  return outcome;
}

// Outcomes of the run's own agents by node, and of its child runs' agents by path.
void add_restored(const CompiledGraph& graph, py::handle specs, RunOptions& options) {
  std::shared_ptr<RestoredPaths> below;
  for (py::handle item : specs) {
    const auto& spec = item.cast<const RestoredSpec&>();
    if (spec.agent.find('/') != std::string::npos) {
      if (!below) below = std::make_shared<RestoredPaths>();
      below->insert_or_assign(spec.agent, restored_outcome(spec));
      continue;
    }
    const std::int64_t node = graph.plan().find(spec.agent);
    if (node < 0) throw py::value_error("cannot restore unknown agent '" + spec.agent + "'");
    options.restored.push_back(Restored{static_cast<std::uint32_t>(node), restored_outcome(spec)});
  }
  options.restored_below = std::move(below);
}

}  // namespace

RunOptions run_options(const CompiledGraph& graph, const RunRequest& request,
                       std::shared_ptr<RunContext> context) {
  RunOptions options;
  options.input = to_payload(request.input);
  options.context =
      context ? std::move(context) : make_run_context(request.dispatcher, request.observer);
  options.context_observer = request.dispatcher;
  options.record_events = request.record_events;
  options.announce_events = request.announce_events;
  options.budget = usage_from_python(request.budget);
  options.deadline_seconds = request.deadline;
  // A checkpoint hook also records how the run ends.
  options.observer = std::dynamic_pointer_cast<RunObserver>(request.hook);
  options.node_hook = request.hook;
  options.key = request.key;
  if (!request.restored.is_none()) add_restored(graph, request.restored, options);
  return options;
}

namespace {

// The options of a run that is not durable: the hot paths of invoke, ainvoke, stream and
// astream, which take their few arguments directly instead of a RunRequest (making one
// costs more than a no-op agent's whole run).
// What a run that could not start (shutting down, a durable run whose record could not be
// written) reports in its batch slot.
RunReport unstarted_report(const std::string& error) {
  RunReport report;
  report.status = RunStatus::Failed;
  report.output = py::none();
  report.outputs = py::dict();
  report.usage = py::dict();
  report.failure = FailureInfo{"the run could not start: " + error, py::none(), FailureKind::Error};
  return report;
}

// Runs the graph once per input on the engine's batch, at most `window` runs in flight.
// Each run starts from `shared` with its own input, or, for durable runs, from what
// `prepare(index, input)` returns (it registers the run in the store). Reports come
// back in input order; each run's state is freed as soon as its report is made, so
// memory follows the window rather than the batch size. `on_finished(indices, reports,
// events, elapsed)`, if given, hears of each group of runs that ended, by input index,
// with each run's events (if it records any; else None) and elapsed time, on this
// thread, which holds the GIL then anyway: a progress bar or a run's trace ends with its
// run, and batches that have neither pay nothing.
std::vector<RunReport> run_batch(const std::shared_ptr<CompiledGraph>& graph,
                                 const py::list& inputs, const RunRequest& shared,
                                 std::size_t window, const py::object& prepare,
                                 const py::object& on_finished) {
  refuse_wait_on_engine_thread({});
  const std::size_t total = inputs.size();
  // Every run of the batch runs its agents in the caller's context.
  const RunOptions base = run_options(*graph, shared);
  BatchOptions options;
  options.window = window;
  if (prepare.is_none()) {
    auto payloads = std::make_shared<std::vector<Payload>>();
    payloads->reserve(total);
    for (py::handle input : inputs) payloads->push_back(to_payload(py::reinterpret_borrow<py::object>(input)));
    // Called without the GIL, on whichever thread ended a run: touches no Python object.
    options.make_options = [base, payloads](std::size_t index) {
      RunOptions run = base;
      run.input = std::move((*payloads)[index]);
      return run;
    };
  } else {
    auto context = std::static_pointer_cast<RunContext>(base.context);
    auto prepare_ref = std::make_shared<PyRef>(prepare);
    auto inputs_ref = std::make_shared<PyRef>(inputs);
    // A durable run is registered in the store when its slot opens: that takes the GIL
    // on the thread that ended the previous run, for one quick store write.
    options.make_options = [base, context, prepare_ref, inputs_ref, target = graph](std::size_t index) {
      if (!python_alive()) throw EngineError("the Python interpreter is shutting down");
      ScopedGil gil;
      try {
        py::object item = py::reinterpret_borrow<py::list>(inputs_ref->get())[index];
        py::object request = prepare_ref->get()(index, item);
        const auto& prepared = request.cast<const RunRequest&>();
        // A run observed on its own (its own callbacks) keeps the batch caller's context.
        RunOptions run = run_options(
            *target, prepared,
            prepared.observer.is_none()
                ? context
                : std::make_shared<RunContext>(
                      context->dispatcher,
                      py::reinterpret_borrow<py::object>(context->caller_context.get()),
                      std::make_shared<const PyRef>(prepared.observer)));
        drain_released_objects();
        return run;
      } catch (py::error_already_set& error) {
        throw EngineError(error.what());
      }
    };
  }
  std::vector<RunReport> reports(total);
  std::optional<Batch> batch;
  {
    py::gil_scoped_release nogil;
    batch.emplace(graph, total, std::move(options));
  }
  std::vector<Batch::Finished> finished;
  // Ctrl-C, or the callback raising, interrupts the batch's runs before the error
  // propagates (a durable run is then listed for resume).
  const auto interrupt = [&batch] {
    py::gil_scoped_release nogil;
    batch->interrupt();
    batch.reset();
  };
  for (;;) {
    bool more;
    {
      py::gil_scoped_release nogil;
      more = batch->next(finished, kWaitSlice, kReportGroup);
    }
    py::list ended_indices;
    py::list ended_reports;
    py::list ended_events;   // a run that records events (a traced one): all of them
    py::list ended_elapsed;
    const bool told = !finished.empty() && !on_finished.is_none();
    for (Batch::Finished& item : finished) {
      RunReport& report = reports[item.index];
      report = item.run ? run_report(item.run) : unstarted_report(item.error);
      if (told) {
        ended_indices.append(item.index);
        ended_reports.append(py::cast(report));
        py::object events = py::none();
        if (item.run && item.run.records_events()) {
          std::vector<Event> taken;
          {
            py::gil_scoped_release nogil;
            while (item.run.next_events(taken, std::chrono::nanoseconds(0))) {
            }
          }
          events = event_batch(std::move(taken), EventForm::Event, false);
        }
        ended_events.append(events);
        ended_elapsed.append(item.run ? item.run.elapsed() : 0.0);
      }
    }
    finished.clear();
    drain_released_objects();
    if (told) {
      try {
        on_finished(ended_indices, ended_reports, ended_events, ended_elapsed);
      } catch (py::error_already_set&) {
        interrupt();
        throw;
      }
    }
    if (!more) break;
    if (PyErr_CheckSignals() != 0) {
      interrupt();
      throw py::error_already_set();
    }
  }
  {
    py::gil_scoped_release nogil;
    batch.reset();
  }
  return reports;
}

}  // namespace

void register_runs(py::module_& m) {
  g_main_thread = py::module_::import("threading")
                      .attr("main_thread")()
                      .attr("ident")
                      .cast<unsigned long>();
  py::register_exception<EngineError>(m, "EngineError", PyExc_RuntimeError);
  m.def("mark_engine_loop_thread", [] { t_engine_loop_thread = true; },
        "Marks the calling thread as the one running the engine's event loop: a wait "
        "there would block every coroutine agent, so it fails at once.");

  py::class_<RunRequest>(m, "RunRequest", "How to start one run.")
      .def(py::init([](py::object input, std::shared_ptr<LoopDispatcher> dispatcher,
                       EventKinds record_events, py::object budget, double deadline,
                       py::object restored, std::shared_ptr<NodeHook> hook, std::string key,
                       py::object observer, bool announce_events) {
             return RunRequest{std::move(input),    std::move(dispatcher), record_events,
                               std::move(budget),   deadline,              std::move(restored),
                               std::move(hook),     std::move(key),        std::move(observer),
                               announce_events};
           }),
           py::arg("input"), py::kw_only(), py::arg("dispatcher") = nullptr,
           py::arg("record_events") = EventKinds{}, py::arg("budget") = py::none(),
           py::arg("deadline") = 0.0, py::arg("restored") = py::none(),
           py::arg("hook") = nullptr, py::arg("key") = "", py::arg("observer") = py::none(),
           py::arg("announce_events") = false)
      .def_readonly("input", &RunRequest::input)
      .def_readonly("dispatcher", &RunRequest::dispatcher)
      .def_readwrite("restored", &RunRequest::restored)
      .def_readwrite("hook", &RunRequest::hook)
      .def_readwrite("key", &RunRequest::key)
      .def_readwrite("observer", &RunRequest::observer);

  py::class_<RestoredSpec>(m, "Restored", "An agent outcome known before the run starts.")
      .def_static(
          "succeeded",
          [](std::string agent, py::object output, std::optional<std::vector<std::string>> routes,
             py::object usage) {
            return RestoredSpec{std::move(agent), RestoredSpec::Kind::Succeeded, std::move(output),
                                std::move(routes), std::move(usage), {}};
          },
          py::arg("agent"), py::arg("output"), py::arg("routes") = py::none(),
          py::arg("usage") = py::none())
      .def_static(
          "rejected",
          [](std::string agent, std::string reason) {
            return RestoredSpec{std::move(agent), RestoredSpec::Kind::Rejected, py::none(),
                                std::nullopt, py::none(), std::move(reason)};
          },
          py::arg("agent"), py::arg("reason"))
      .def_static(
          "awaiting_input",
          [](std::string agent, py::object question) {
            return RestoredSpec{std::move(agent), RestoredSpec::Kind::AwaitsInput,
                                std::move(question), std::nullopt, py::none(), "awaits input"};
          },
          py::arg("agent"), py::arg("question"))
      .def_readonly("agent", &RestoredSpec::agent);

  py::class_<RunHandle>(m, "RunHandle")
      .def_property_readonly("id", &RunHandle::id)
      .def_property_readonly("key", &RunHandle::key)
      .def_property_readonly("status", &RunHandle::status)
      .def_property_readonly("done", &RunHandle::done)
      .def_property_readonly(
          "succeeded",
          [](const RunHandle& run) { return run.status() == RunStatus::Succeeded; },
          "Whether the run ended and succeeded: `status` without making an enum member "
          "(a call into Python's enum machinery, most of a microsecond).")
      .def_property_readonly("elapsed", &RunHandle::elapsed)
      .def("wait", &wait_run, py::arg("timeout") = -1.0,
           "Waits for the run to end (timeout < 0: no limit). True once it has ended.")
      .def("cancel", &RunHandle::cancel, py::call_guard<py::gil_scoped_release>())
      .def("interrupt", &RunHandle::interrupt, py::call_guard<py::gil_scoped_release>())
      .def("when_ended", &call_when_ended, py::arg("callback"),
           "Calls `callback()` once the run has ended: at once if it has, else soon after, "
           "on a thread of the engine's pool.")
      .def("report", &run_report)
      .def("output_or_report", &output_or_report,
           "An ended run's output if it succeeded, else its RunReport.")
      .def("outcomes", &agent_records)
      .def("end_event_or_report", &end_event_or_report,
           "An ended run's \"end\" Event (carrying its output) if it succeeded, else its "
           "RunReport.")
      .def(
          "next_events",
          [](RunHandle& run, double timeout_seconds, double gather_seconds, EventForm form) {
            std::vector<Event> events;
            bool more;
            if (timeout_seconds > 0 && !run.done()) {
              refuse_wait_on_engine_thread(run);
              py::gil_scoped_release nogil;
              more = run.next_events(events, seconds_of(timeout_seconds),
                                     seconds_of(gather_seconds), kWaitSpin);
            } else {
              // Nothing to wait for, only a lock no holder keeps while it needs the GIL:
              // letting go of the GIL here would hand it to an agent and queue for it back.
              more = run.next_events(events, std::chrono::nanoseconds(0));
            }
            drain_released_objects();
            return event_batch(std::move(events), form, more);
          },
          py::arg("timeout"), py::arg("gather") = 0.0, py::arg("form") = EventForm::Event,
          "The events recorded so far, as an EventBatch of chunks in `form`, waiting up to "
          "`timeout` seconds for one and, with `gather`, until `gather` seconds after the "
          "first (or the run's end). Its `more` is false once the run has ended and every "
          "event was taken.")
      .def("trace_json", &RunHandle::trace_json)
      .def("usage", [](const RunHandle& run) { return usage_to_python(run.usage()); })
      .def_property_readonly("budget_exhausted", &RunHandle::budget_exhausted);

  m.def(
      "start_run",
      [](CompiledGraph& graph, const RunRequest& request) {
        RunOptions options = run_options(graph, request);
        py::gil_scoped_release nogil;
        return graph.start(std::move(options));
      },
      py::arg("graph"), py::arg("request"), "Starts a run and returns its handle at once.");
  m.def(
      "start",
      [](CompiledGraph& graph, py::object input, std::shared_ptr<LoopDispatcher> dispatcher,
         py::object budget, double deadline, EventKinds record_events, bool announce_events) {
        RunOptions options =
            plain_run_options(graph, std::move(input), std::move(dispatcher), std::move(budget),
                              deadline, record_events, announce_events);
        py::gil_scoped_release nogil;
        return graph.start(std::move(options));
      },
      py::arg("graph"), py::arg("input"), py::arg("dispatcher"), py::arg("budget"),
      py::arg("deadline"), py::arg("record_events") = EventKinds{},
      py::arg("announce_events") = false,
      "Starts a run that is not durable and returns its handle at once; with "
      "`announce_events`, the dispatcher's loop is told of its events (an astream).");
  m.def(
      "invoke",
      [](CompiledGraph& graph, py::object input, std::shared_ptr<LoopDispatcher> dispatcher,
         py::object budget, double deadline) {
        RunOptions options = plain_run_options(graph, std::move(input), std::move(dispatcher),
                                               std::move(budget), deadline);
        // Started and waited for in one release of the GIL: the first agents want it at
        // once, and one taken back between the start and the wait made them sleep on it
        // and be woken tens of microseconds later, in about one fan-out run in six.
        refuse_wait_on_engine_thread({});
        RunHandle run;
        {
          py::gil_scoped_release nogil;
          run = graph.start(std::move(options));
          run.wait_for(kWaitSlice, kWaitSpin);
        }
        wait_run(run, -1.0);  // the rest, if it is still going: Ctrl-C and all
        return output_or_report(run);
      },
      py::arg("graph"), py::arg("input"), py::arg("dispatcher"), py::arg("budget"),
      py::arg("deadline"),
      "Runs the graph: its output if the run succeeded, else the RunReport of how it ended.");
  m.def(
      "refuse_wait_here", [] { refuse_wait_on_engine_thread({}); },
      "Raises EngineError if this thread must not wait for a run (an engine thread, the "
      "engine's event loop), as invoke() does before it starts one.");
  m.attr("DEFAULT_BATCH_WINDOW") = BatchOptions::kDefaultWindow;
  m.def("batch", &run_batch, py::arg("graph"), py::arg("inputs"), py::arg("shared"),
        py::arg("window") = 0, py::arg("prepare") = py::none(),
        py::arg("on_finished") = py::none(),
        "Runs the graph once per input, at most `window` runs at once (0: "
        "DEFAULT_BATCH_WINDOW); reports in input order. `on_finished(indices, reports, "
        "events, elapsed)` is called with the GIL after each group of runs that ended.");
}

}  // namespace counterpoint::bindings
