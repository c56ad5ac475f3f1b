#include "events.hpp"

#include <array>
#include <optional>
#include <string>

#include <structmember.h>

#include <pybind11/native_enum.h>
#include <pybind11/stl.h>

#include "records.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// counterpoint.Event, in the order of its fields (its positional arguments).
constexpr std::array<const char*, 10> kEventFields = {
    "kind", "agent", "run_id", "time", "output", "error", "message", "priority", "attempt", "delay"};
constexpr std::size_t kOutputField = 4;
constexpr std::size_t kErrorField = 5;
constexpr std::size_t kEventKinds = kEventKindCount;

// counterpoint.Event, registered by the Python package at import (set_event_type), and
// how to fill one. Calling the class runs the frozen dataclass's __init__, which sets
// each field through object.__setattr__: about a microsecond per event, most of what a
// stream of fast agents cost. Event has slots, so each field has its place in the
// instance: a new event is filled in place, as its slots' member descriptors would.
struct EventClass {
  PyTypeObject* type = nullptr;
  // Each field's offset in an instance, in kEventFields order; none (a class without
  // plain object slots) makes events by calling the class.
  std::optional<std::array<Py_ssize_t, kEventFields.size()>> offsets;
  std::array<PyObject*, kEventKinds> kinds{};  // interned, by EventKind
  PyObject* end = nullptr;                     // "end", the kind of a run's last event
};
EventClass g_event;

#ifdef Py_T_OBJECT_EX  // Python 3.12 renamed structmember.h's constants
constexpr int kObjectSlot = Py_T_OBJECT_EX;
constexpr unsigned kReadOnly = Py_READONLY;
#else
constexpr int kObjectSlot = T_OBJECT_EX;
constexpr unsigned kReadOnly = READONLY;
#endif

// Where `name` lives in instances of `type`: the offset of its slot, if it is a plain,
// writable object slot of the class itself.
std::optional<Py_ssize_t> slot_offset(PyTypeObject* type, const py::object& attributes,
                                      const char* name) {
  PyObject* found = PyMapping_GetItemString(attributes.ptr(), name);
  if (found == nullptr) {
    PyErr_Clear();
    return std::nullopt;
  }
  const py::object descriptor = py::reinterpret_steal<py::object>(found);
  if (Py_TYPE(found) != &PyMemberDescr_Type) return std::nullopt;
  const auto* member = reinterpret_cast<PyMemberDescrObject*>(found)->d_member;
  if (reinterpret_cast<PyMemberDescrObject*>(found)->d_common.d_type != type ||
      member->type != kObjectSlot || (static_cast<unsigned>(member->flags) & kReadOnly) != 0 ||
      member->offset < static_cast<Py_ssize_t>(sizeof(PyObject)) ||
      member->offset + static_cast<Py_ssize_t>(sizeof(PyObject*)) > type->tp_basicsize) {
    return std::nullopt;
  }
  return member->offset;
}

void set_event_type(const py::type& type) {
  EventClass event;
  event.type = reinterpret_cast<PyTypeObject*>(type.ptr());
  const py::object attributes = type.attr("__dict__");
  std::array<Py_ssize_t, kEventFields.size()> offsets{};
  bool slotted = true;
  for (std::size_t i = 0; i < kEventFields.size() && slotted; ++i) {
    const auto offset = slot_offset(event.type, attributes, kEventFields[i]);
    slotted = offset.has_value();
    if (slotted) offsets[i] = *offset;
  }
  if (slotted) event.offsets = offsets;
  for (std::size_t k = 0; k < kEventKinds; ++k) {
    event.kinds[k] = PyUnicode_InternFromString(to_string(static_cast<EventKind>(k)));
    if (event.kinds[k] == nullptr) throw py::error_already_set();
  }
  event.end = PyUnicode_InternFromString("end");
  if (event.end == nullptr) throw py::error_already_set();
  // Held for the life of the process, like the module that uses them.
  type.inc_ref();
  g_event = event;
}

// Each field's value, in kEventFields order: new references, or null where making one
// failed (with the Python error set).
using EventFields = std::array<PyObject*, kEventFields.size()>;

PyObject* new_str(const std::string& text) {
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

// Whether the cycle collector tracks `object` now or may later (_PyObject_GC_MAY_BE_TRACKED):
// a dict or list holding only atomic values is untracked until something else goes in.
bool may_be_tracked(PyObject* object) {
  return PyObject_IS_GC(object) != 0 &&
         (!PyTuple_CheckExact(object) || PyObject_GC_IsTracked(object) != 0);
}

py::object new_event(const EventFields& values) {
  // Owns the values until they are stored, so that every path releases them.
  std::array<py::object, kEventFields.size()> owned;
  bool complete = true;
  for (std::size_t i = 0; i < values.size(); ++i) {
    owned[i] = py::reinterpret_steal<py::object>(values[i]);
    complete = complete && values[i] != nullptr;
  }
  if (!complete) throw py::error_already_set();
  if (g_event.type == nullptr) {
    throw std::logic_error("counterpoint.Event was not registered (set_event_type)");
  }
  if (!g_event.offsets) {
    PyObject* made = PyObject_Vectorcall(reinterpret_cast<PyObject*>(g_event.type),
                                         values.data(), values.size(), nullptr);
    if (made == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(made);
  }
  PyObject* made = g_event.type->tp_alloc(g_event.type, 0);
  if (made == nullptr) throw py::error_already_set();
  // A fresh instance's slots are null: each takes over its value's reference.
  // Only the output and the error may be containers; the other fields are strings and
  // numbers.
  const bool holds_containers = may_be_tracked(values[kOutputField]) ||
                                may_be_tracked(values[kErrorField]);
  for (std::size_t i = 0; i < owned.size(); ++i) {
    *reinterpret_cast<PyObject**>(reinterpret_cast<char*>(made) + (*g_event.offsets)[i]) =
        owned[i].release().ptr();
  }
  // As CPython does for tuples: a frozen event holding no object the cycle collector
  // may track can be in no cycle, so the collector need not track it either. A stream
  // holds hundreds of events at once; tracked, they would make each collection of the
  // youngest generation walk all of them.
  if (!holds_containers && PyObject_GC_IsTracked(made) != 0) PyObject_GC_UnTrack(made);
  return py::reinterpret_steal<py::object>(made);
}

PyObject* new_ref(PyObject* object) {
  Py_INCREF(object);
  return object;
}

PyObject* payload_ref(const Payload& payload) {
  return new_ref(payload ? static_cast<PyObject*>(payload.get()) : Py_None);
}

// The agent names of one batch of events as Python strings, each made once: an agent's
// finish mostly comes in the same batch as its start, a few events later. Compared by
// node first: the same node of different child runs has different names.
class AgentNames {
 public:
  // A new reference, or null with the Python error set.
  PyObject* get(const Event& event) {
    for (const Entry& entry : recent_) {
      if (entry.name != nullptr && entry.node == event.node && *entry.name == event.agent) {
        return new_ref(entry.text.ptr());
      }
    }
    PyObject* text = new_str(event.agent);
    if (text == nullptr) return nullptr;
    recent_[next_] = Entry{event.node, &event.agent, py::reinterpret_borrow<py::object>(text)};
    next_ = (next_ + 1) % recent_.size();
    return text;
  }

 private:
  struct Entry {
    std::uint32_t node = 0;
    const std::string* name = nullptr;  // in the batch's events, which outlive this
    py::object text;
  };
  std::array<Entry, 8> recent_;
  std::size_t next_ = 0;
};

py::object event_object(const Event& event, PyObject* run_id, AgentNames& names) {
  // An error's payload, a retried attempt's and the one a fallback follows is the exception.
  const bool failed = event.kind == EventKind::Error || event.kind == EventKind::Retry ||
                      event.kind == EventKind::Fallback;
  return new_event({new_ref(g_event.kinds[static_cast<std::size_t>(event.kind)]),
                    names.get(event), new_ref(run_id), PyFloat_FromDouble(event.seconds),
                    failed ? new_ref(Py_None) : payload_ref(event.payload),
                    failed ? payload_ref(event.payload) : new_ref(Py_None),
                    new_str(event.message), PyLong_FromLong(event.priority),
                    PyLong_FromUnsignedLong(event.attempt), PyFloat_FromDouble(event.delay)});
}

// {agent path: output}, a new reference (null with the Python error set).
PyObject* update_object(const Event& event, AgentNames& names) {
  const py::object update = py::reinterpret_steal<py::object>(PyDict_New());
  const py::object name = py::reinterpret_steal<py::object>(names.get(event));
  if (!update || !name) return nullptr;
  PyObject* output = event.payload ? static_cast<PyObject*>(event.payload.get()) : Py_None;
  if (PyDict_SetItem(update.ptr(), name.ptr(), output) != 0) return nullptr;
  return update.inc_ref().ptr();
}


// counterpoint._core.EventBatch: a plain CPython iterator (pybind11's iterators cost a
// function call's machinery per item). Each chunk is made when the consumer reaches it
// and usually freed before the next is made: a batch of thousands never exists as
// objects all at once, so it neither grows a list nor makes the cycle collector run.
struct BatchState {
  std::vector<Event> events;
  std::size_t next = 0;
  EventForm form = EventForm::Event;
  bool more = true;
  AgentNames names;            // points into `events`, which never change
  py::object run_id;           // every event of a stream carries its root run's id
  std::uint64_t run_id_of = 0;
};

struct EventBatchObject {
  PyObject_HEAD
  BatchState* state;
};

// A new reference to the next chunk; null at the end (no error set) or with the error set.
PyObject* next_chunk(BatchState& batch) {
  while (batch.next < batch.events.size()) {
    const Event& event = batch.events[batch.next++];
    if (batch.form == EventForm::Update) {
      if (event.kind != EventKind::Finish) continue;
      return update_object(event, batch.names);
    }
    if (!batch.run_id || event.run_id != batch.run_id_of) {
      batch.run_id = py::int_(event.run_id);
      batch.run_id_of = event.run_id;
    }
    return event_object(event, batch.run_id.ptr(), batch.names).release().ptr();
  }
  return nullptr;
}

PyObject* batch_next(PyObject* self) {
  try {
    return next_chunk(*reinterpret_cast<EventBatchObject*>(self)->state);
  } catch (py::error_already_set& error) {
    error.restore();
    return nullptr;
  } catch (const std::exception& error) {
    PyErr_SetString(PyExc_RuntimeError, error.what());
    return nullptr;
  }
}

void batch_dealloc(PyObject* self) {
  delete reinterpret_cast<EventBatchObject*>(self)->state;  // with the GIL: payloads let go
  Py_TYPE(self)->tp_free(self);
}

PyObject* batch_more(PyObject* self, void* /*closure*/) {
  return PyBool_FromLong(reinterpret_cast<EventBatchObject*>(self)->state->more ? 1 : 0);
}

PyGetSetDef batch_getset[] = {
    {"more", batch_more, nullptr,
     "False once the run has ended and its every event was taken.", nullptr},
    {nullptr, nullptr, nullptr, nullptr, nullptr}};

// Filled in by register_events (a static type, as CPython's own are).
PyTypeObject g_batch_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

}  // namespace

py::object event_batch(std::vector<Event>&& events, EventForm form, bool more) {
  auto state = std::make_unique<BatchState>();
  state->events = std::move(events);
  state->form = form;
  state->more = more;
  PyObject* made = g_batch_type.tp_alloc(&g_batch_type, 0);
  if (made == nullptr) throw py::error_already_set();
  reinterpret_cast<EventBatchObject*>(made)->state = state.release();
  return py::reinterpret_steal<py::object>(made);
}

py::object end_event_or_report(const RunHandle& run) {
  if (run.status() != RunStatus::Succeeded) return py::cast(run_report(run));
  return new_event({new_ref(g_event.end), new_ref(Py_None),
                    PyLong_FromUnsignedLongLong(run.id()), PyFloat_FromDouble(run.elapsed()),
                    run_report(run).output.release().ptr(), new_ref(Py_None),
                    PyUnicode_FromStringAndSize("", 0), PyLong_FromLong(0), PyLong_FromLong(0),
                    PyFloat_FromDouble(0.0)});
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
        for (std::size_t k = 0; k < kEventKinds; ++k) {
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
  if (PyType_Ready(&g_batch_type) != 0) throw py::error_already_set();
  Py_INCREF(&g_batch_type);  // static: held for the life of the process
  m.add_object("EventBatch", reinterpret_cast<PyObject*>(&g_batch_type));
  m.def("set_event_type", &set_event_type,
        "Tells the engine which class its streamed events are (counterpoint.Event).");
}

}  // namespace counterpoint::bindings
