// Streaming a run from Python: start_stream (a run and its first events, for the streams
// Python assembles from several modes) and Stream, the iterator a stream of one mode
// ("events" or "updates") is, end to end, without a Python frame per chunk.
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <pybind11/stl.h>

#include "counterpoint/compiled_graph.hpp"
#include "event_type.hpp"
#include "events.hpp"
#include "gil.hpp"
#include "records.hpp"
#include "register.hpp"
#include "runs.hpp"

namespace counterpoint::bindings {

namespace {

// Starts `options`' run and takes its first events, in one release of the GIL, as
// invoke starts and waits: the first agents want the GIL at once, and one taken back in
// between makes them queue for it and be woken, which costs more than a run of no-op
// agents. `more`: whether the run has events still to come. Throws the Python error of
// a Ctrl-C that came while it waited (the run is then interrupted).
RunHandle start_and_take(CompiledGraph& graph, RunOptions options, std::vector<Event>& events,
                         bool& more, double timeout_seconds, double gather_seconds) {
  refuse_wait_on_engine_thread({});
  RunHandle run;
  {
    py::gil_scoped_release nogil;
    run = graph.start(std::move(options));
    more = run.next_events(events, seconds_of(timeout_seconds), seconds_of(gather_seconds),
                           kWaitSpin);
  }
  drain_released_objects();
  if (PyErr_CheckSignals() != 0) {
    // Ctrl-C while it waited: the caller has no handle yet to interrupt the run with.
    run.interrupt();
    throw py::error_already_set();
  }
  return run;
}

// Requires the GIL. A streamed run's options; `what` names the entry point in the error.
RunOptions stream_options(const CompiledGraph& graph, py::object input,
                          std::shared_ptr<LoopDispatcher> dispatcher, py::object budget,
                          double deadline, EventKinds record_events, const char* what) {
  if (record_events.none()) {
    throw py::value_error(std::string(what) + ": a stream records events; record_events is empty");
  }
  return plain_run_options(graph, std::move(input), std::move(dispatcher), std::move(budget),
                           deadline, record_events);
}

// counterpoint._core.Stream: what `graph.stream(x, stream_mode="events" or "updates")`
// returns for a run that is not durable, observed or traced. A generator would cost a
// frame resumption per chunk and a few microseconds per run; this makes each chunk
// straight from the run's events as the caller's loop asks for it. Like the generator
// it replaces, it starts the run at the first next(), ends with the run's "end" event
// (events) or with the error `on_failure(report)` raises, and cancels the run when
// closed or dropped early.
struct StreamState {
  enum class Phase : std::uint8_t { NotStarted, Streaming, Ended };
  std::shared_ptr<CompiledGraph> graph;
  std::optional<RunOptions> options;  // until the run starts
  RunHandle run;
  EventChunks chunks;
  bool more = true;  // the run has events still to come
  Phase phase = Phase::NotStarted;
  double timeout_seconds;
  double gather_seconds;
  py::object on_failure;

  StreamState(std::shared_ptr<CompiledGraph> graph_, RunOptions options_, EventForm form_,
              double timeout, double gather, py::object on_failure_)
      : graph(std::move(graph_)),
        options(std::move(options_)),
        chunks(form_),
        timeout_seconds(timeout),
        gather_seconds(gather),
        on_failure(std::move(on_failure_)) {}

  // Stops the run unless it ended: the caller closed the stream, dropped it, or an
  // error ended its iteration.
  void close() {
    phase = Phase::Ended;
    options.reset();
    if (run && !run.done()) {
      py::gil_scoped_release nogil;
      run.cancel();
    }
  }

  // Waits for the run's next events (the GIL released, in slices: Ctrl-C is noticed
  // between them, and interrupts the run as the generator's KeyboardInterrupt did).
  void take_more() {
    std::vector<Event> events;
    if (!run.done()) {
      refuse_wait_on_engine_thread(run);
      py::gil_scoped_release nogil;
      more = run.next_events(events, seconds_of(timeout_seconds), seconds_of(gather_seconds),
                             kWaitSpin);
    } else {
      more = run.next_events(events, std::chrono::nanoseconds(0));
    }
    drain_released_objects();
    chunks.refill(std::move(events));
    if (PyErr_CheckSignals() != 0) {
      if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) != 0) {
        py::gil_scoped_release nogil;
        run.interrupt();  // listed for resume, not cancelled on purpose
      }
      throw py::error_already_set();
    }
  }

  // A new reference to the next chunk, or null: the end (no error set) or an error.
  PyObject* next() {
    if (phase == Phase::NotStarted && options) {
      phase = Phase::Streaming;
      std::vector<Event> events;
      RunOptions starting = std::move(*options);
      options.reset();
      run = start_and_take(*graph, std::move(starting), events, more, timeout_seconds,
                           gather_seconds);
      chunks.refill(std::move(events));
    }
    while (phase == Phase::Streaming) {
      if (PyObject* chunk = chunks.next()) return chunk;
      if (PyErr_Occurred() != nullptr) return nullptr;
      if (more) {
        take_more();
        continue;
      }
      phase = Phase::Ended;
      if (run.status() == RunStatus::Succeeded) {
        // A stream of events ends with the run's "end" event; one of updates just ends.
        return chunks.form() == EventForm::Event ? end_event_or_report(run).release().ptr()
                                                 : nullptr;
      }
      on_failure(py::cast(run_report(run)));  // raises what invoke would
      return nullptr;
    }
    return nullptr;
  }
};

struct StreamObject {
  PyObject_HEAD
  StreamState* state;
};

StreamState& state_of(PyObject* self) { return *reinterpret_cast<StreamObject*>(self)->state; }

PyObject* stream_next(PyObject* self) {
  StreamState& stream = state_of(self);
  try {
    PyObject* chunk = stream.next();
    if (chunk == nullptr && PyErr_Occurred() != nullptr) stream.close();
    return chunk;
  } catch (py::error_already_set& error) {
    stream.close();
    error.restore();
    return nullptr;
  } catch (const std::exception& error) {
    stream.close();
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
}

PyObject* stream_close(PyObject* self, PyObject* /*unused*/) {
  try {
    state_of(self).close();
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
  Py_RETURN_NONE;
}

void stream_dealloc(PyObject* self) {
  try {
    state_of(self).close();
  } catch (...) {
    // A destructor has nobody to report to; the run ends on its own.
  }
  delete reinterpret_cast<StreamObject*>(self)->state;  // with the GIL: payloads let go
  Py_TYPE(self)->tp_free(self);
}

// NOLINTBEGIN(cppcoreguidelines-avoid-c-arrays): the C API's tables
PyMethodDef stream_methods[] = {
    {"close", stream_close, METH_NOARGS,
     "Ends the stream; a run still going is cancelled, as closing a generator did."},
    {nullptr, nullptr, 0, nullptr}};
// NOLINTEND(cppcoreguidelines-avoid-c-arrays)

// Filled in by register_streams (a static type, as CPython's own are).
PyTypeObject g_stream_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

void register_streams(py::module_& m) {
  g_stream_type.tp_name = "counterpoint._core.Stream";
  g_stream_type.tp_basicsize = sizeof(StreamObject);
  g_stream_type.tp_flags = Py_TPFLAGS_DEFAULT;
  g_stream_type.tp_doc =
      "A run streamed in one mode (events or updates): each chunk made as it is reached. "
      "The run starts at the first next(); close() or dropping it cancels a run still "
      "going.";
  g_stream_type.tp_dealloc = stream_dealloc;
  g_stream_type.tp_iter = PyObject_SelfIter;
  g_stream_type.tp_iternext = stream_next;
  g_stream_type.tp_methods = stream_methods;
  add_static_type(m, g_stream_type, "Stream");

  m.def(
      "stream",
      [](std::shared_ptr<CompiledGraph> graph, py::object input,
         std::shared_ptr<LoopDispatcher> dispatcher, py::object budget, double deadline,
         double timeout_seconds, double gather_seconds, EventKinds record_events,
         EventForm form, py::object on_failure) {
        RunOptions options = stream_options(*graph, std::move(input), std::move(dispatcher),
                                            std::move(budget), deadline, record_events, "stream");
        auto state = std::make_unique<StreamState>(std::move(graph), std::move(options), form,
                                                   timeout_seconds, gather_seconds,
                                                   std::move(on_failure));
        PyObject* made = g_stream_type.tp_alloc(&g_stream_type, 0);
        if (made == nullptr) throw py::error_already_set();
        reinterpret_cast<StreamObject*>(made)->state = state.release();
        return py::reinterpret_steal<py::object>(made);
      },
      py::arg("graph"), py::arg("input"), py::arg("dispatcher"), py::arg("budget"),
      py::arg("deadline"), py::arg("timeout"), py::arg("gather"), py::arg("record_events"),
      py::arg("form"), py::arg("on_failure"),
      "A Stream of a run that is not durable, recording `record_events` and yielding chunks "
      "in `form`; `on_failure(report)` raises for a run that did not succeed.");

  py::class_<StartedStream>(m, "StartedStream", "A streamed run and its first events.")
      .def_readonly("handle", &StartedStream::handle)
      .def_readonly("events", &StartedStream::events,
                    "An EventBatch, as RunHandle.next_events gives.");
  m.def(
      "start_stream",
      [](CompiledGraph& graph, py::object input, std::shared_ptr<LoopDispatcher> dispatcher,
         py::object budget, double deadline, double timeout_seconds, double gather_seconds,
         EventKinds record_events, EventForm form) {
        RunOptions options = stream_options(graph, std::move(input), std::move(dispatcher),
                                            std::move(budget), deadline, record_events,
                                            "start_stream");
        std::vector<Event> events;
        bool more = true;
        RunHandle run = start_and_take(graph, std::move(options), events, more, timeout_seconds,
                                       gather_seconds);
        return StartedStream{std::move(run), event_batch(std::move(events), form, more)};
      },
      py::arg("graph"), py::arg("input"), py::arg("dispatcher"), py::arg("budget"),
      py::arg("deadline"), py::arg("timeout"), py::arg("gather"),
      py::arg("record_events") = EventKinds::all(), py::arg("form") = EventForm::Event,
      "Starts a run that is not durable and records events of the kinds `record_events`; "
      "its first events come with it, as RunHandle.next_events gives them.");
}

}  // namespace counterpoint::bindings
