#include "events.hpp"

#include <array>
#include <string>

#include <pybind11/native_enum.h>
#include <pybind11/stl.h>

#include "event_type.hpp"
#include "records.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// Agent names as Python strings, made once and kept for the life of the process, by
// node: an update is a dict keyed by its agent's name, and making that string (and
// hashing it, and freeing it) was most of what an update cost; a kept one carries its
// hash. Slots are shared by nodes of different graphs and child runs alike: a name that
// differs from the slot's replaces it. Used with the GIL held only.
class AgentNames {
 public:
  // A new reference, or null with the Python error set.
  PyObject* get(const Event& event) {
    Entry& entry = entries_[event.node % entries_.size()];
    if (entry.text != nullptr && entry.name == event.agent) return new_ref(entry.text);
    PyObject* text = new_str(event.agent);
    if (text == nullptr) return nullptr;
    Py_XSETREF(entry.text, new_ref(text));
    entry.name = event.agent;
    return text;
  }

 private:
  struct Entry {
    std::string name;
    PyObject* text = nullptr;  // a strong reference, kept (never released: see agent_names())
  };
  std::array<Entry, 4096> entries_;
};

// Never destroyed: its strings would be released after the interpreter is gone.
AgentNames& agent_names() {
  static auto* names = new AgentNames();  // NOLINT(cppcoreguidelines-owning-memory)
  return *names;
}

// {agent path: output}, a new reference (null with the Python error set).
PyObject* update_object(const Event& event) {
  const py::object update = py::reinterpret_steal<py::object>(PyDict_New());
  const py::object name = py::reinterpret_steal<py::object>(agent_names().get(event));
  if (!update || !name) return nullptr;
  PyObject* output = event.payload ? static_cast<PyObject*>(event.payload.get()) : Py_None;
  if (PyDict_SetItem(update.ptr(), name.ptr(), output) != 0) return nullptr;
  return update.inc_ref().ptr();
}

// counterpoint._core.EventBatch: a plain CPython iterator (pybind11's iterators cost a
// function call's machinery per item) over one batch of a run's events.
struct EventBatchObject {
  PyObject_HEAD
  EventChunks* chunks;
  bool more;
};

PyObject* batch_next(PyObject* self) {
  try {
    return reinterpret_cast<EventBatchObject*>(self)->chunks->next();
  } catch (py::error_already_set& error) {
    error.restore();
    return nullptr;
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
}

void batch_dealloc(PyObject* self) {
  delete reinterpret_cast<EventBatchObject*>(self)->chunks;  // with the GIL: payloads let go
  Py_TYPE(self)->tp_free(self);
}

PyObject* batch_more(PyObject* self, void* /*closure*/) {
  return PyBool_FromLong(reinterpret_cast<EventBatchObject*>(self)->more ? 1 : 0);
}

PyGetSetDef batch_getset[] = {
    {"more", batch_more, nullptr,
     "False once the run has ended and its every event was taken.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// Filled in by register_events (a static type, as CPython's own are).
PyTypeObject g_batch_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

struct EventChunks::State {
  std::vector<Event> events;
  std::size_t next = 0;
  EventForm form = EventForm::Event;
  py::object run_id;  // every event of a stream carries its root run's id
  std::uint64_t run_id_of = 0;
};

EventChunks::EventChunks(EventForm form) : state_(std::make_unique<State>()) {
  state_->form = form;
}

EventChunks::~EventChunks() = default;

EventForm EventChunks::form() const noexcept { return state_->form; }

void EventChunks::refill(std::vector<Event>&& events) {
  state_->events = std::move(events);
  state_->next = 0;
}

PyObject* EventChunks::next() {
  State& batch = *state_;
  while (batch.next < batch.events.size()) {
    Event& event = batch.events[batch.next++];
    if (batch.form == EventForm::Update) {
      if (event.kind != EventKind::Finish) continue;
      return update_object(event);
    }
    if (!batch.run_id || event.run_id != batch.run_id_of) {
      batch.run_id = py::int_(event.run_id);
      batch.run_id_of = event.run_id;
    }
    // Reached once: the event hands its strings over to the Event.
    return new_engine_event(std::move(event), batch.run_id.ptr());
  }
  return nullptr;
}

py::object event_batch(std::vector<Event>&& events, EventForm form, bool more) {
  auto chunks = std::make_unique<EventChunks>(form);
  chunks->refill(std::move(events));
  PyObject* made = g_batch_type.tp_alloc(&g_batch_type, 0);
  if (made == nullptr) throw py::error_already_set();
  auto* batch = reinterpret_cast<EventBatchObject*>(made);
  batch->chunks = chunks.release();
  batch->more = more;
  return py::reinterpret_steal<py::object>(made);
}

py::object end_event_or_report(const RunHandle& run) {
  if (run.status() != RunStatus::Succeeded) return py::cast(run_report(run));
  return new_end_event(run.id(), run.elapsed(), run_report(run).output);
}


void register_events(py::module_& m) {
  py::native_enum<EventForm>(m, "EventForm", "enum.Enum", "What a stream takes its events as.")
      .value("event", EventForm::Event)
      .value("update", EventForm::Update)
      .finalize();
  py::class_<EventKinds>(m, "EventKinds", "The kinds of event a run records.")
      .def(py::init([](const std::vector<EventKind>& kinds) {
             EventKinds set;
             for (EventKind kind : kinds) set = set.with(kind);
             return set;
           }),
           py::arg("kinds"))
      .def_static("all", &EventKinds::all)
      .def_property_readonly("none", &EventKinds::none)
      .def("__contains__", &EventKinds::contains)
      .def("__eq__", &EventKinds::operator==)
      .def("__repr__", [](const EventKinds& kinds) {
        std::string names;
        for (std::size_t k = 0; k < kEventKindCount; ++k) {
          const auto kind = static_cast<EventKind>(k);
          if (kinds.contains(kind)) names += std::string(names.empty() ? "" : ", ") + to_string(kind);
        }
        return "EventKinds(" + names + ")";
      });
  g_batch_type.tp_name = "counterpoint._core.EventBatch";
  g_batch_type.tp_basicsize = sizeof(EventBatchObject);
  g_batch_type.tp_flags = Py_TPFLAGS_DEFAULT;
  g_batch_type.tp_doc = "A batch of a run's events, each made into a chunk as it is iterated.";
  g_batch_type.tp_dealloc = batch_dealloc;
  g_batch_type.tp_iter = PyObject_SelfIter;
  g_batch_type.tp_iternext = batch_next;
  g_batch_type.tp_getset = batch_getset;
  add_static_type(m, g_batch_type, "EventBatch");
}

}  // namespace counterpoint::bindings
