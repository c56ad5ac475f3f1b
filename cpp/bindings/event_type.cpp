#include "event_type.hpp"

#include <array>
#include <cstddef>
#include <new>
#include <string>
#include <utility>

#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// counterpoint.Event's fields, in the order of its positional arguments.
enum Field : std::size_t {
  kKind,
  kAgent,
  kRunId,
  kTime,
  kOutput,
  kError,
  kMessage,
  kPriority,
  kAttempt,
  kDelay,
  kFieldCount
};
constexpr std::array<const char*, kFieldCount> kFieldNames = {
    "kind", "agent", "run_id", "time", "output", "error", "message", "priority", "attempt", "delay"};

// What an event made by the engine keeps of its own fields until they are read: most
// streams read an event's kind, agent and output, and many read nothing at all.
struct Unmade {
  std::string agent;
  std::string message;
  double time = 0.0;
  double delay = 0.0;
  long priority = 0;
  unsigned long attempt = 0;
};

struct EventObject {
  PyObject_HEAD
  std::array<PyObject*, kFieldCount> fields;  // null: not made yet, see `unmade`
  Unmade unmade;
};

// Filled in by register_event_type (a static type, as CPython's own are).
PyTypeObject g_event_type = {PyVarObject_HEAD_INIT(nullptr, 0)};
std::array<PyObject*, kEventKindCount> g_kinds{};  // interned, by EventKind
PyObject* g_end_kind = nullptr;                     // "end", a run's last event
PyObject* g_frozen_error = nullptr;                 // dataclasses.FrozenInstanceError

EventObject* as_event(PyObject* object) { return reinterpret_cast<EventObject*>(object); }

// Whether the cycle collector tracks `object` now or may later (_PyObject_GC_MAY_BE_TRACKED):
// a dict or list holding only atomic values is untracked until something else goes in.
bool may_be_tracked(PyObject* object) {
  return PyObject_IS_GC(object) != 0 &&
         (!PyTuple_CheckExact(object) || PyObject_GC_IsTracked(object) != 0);
}

// Freed events kept for reuse, as CPython keeps floats and tuples: a stream makes an
// event, its consumer drops it, and the next one takes its memory instead of a trip
// through the allocator and the cycle collector's bookkeeping. Used with the GIL held.
class FreeEvents {
 public:
  EventObject* take() noexcept { return count_ == 0 ? nullptr : kept_[--count_]; }
  bool keep(EventObject* event) noexcept {
    if (count_ == kept_.size()) return false;
    kept_[count_++] = event;
    return true;
  }

 private:
  std::array<EventObject*, 64> kept_{};
  std::size_t count_ = 0;
};
FreeEvents g_free_events;

EventObject* allocate() {
  EventObject* self = g_free_events.take();
  if (self != nullptr) {
    PyObject_Init(reinterpret_cast<PyObject*>(self), &g_event_type);
  } else {
    self = PyObject_GC_New(EventObject, &g_event_type);
    if (self == nullptr) return nullptr;
  }
  self->fields.fill(nullptr);
  new (&self->unmade) Unmade();
  return self;
}

// As CPython does for tuples: an event holding nothing the cycle collector may track can
// be in no cycle, so the collector need not track it either. A stream holds hundreds of
// events at once; tracked, they would make each young collection walk all of them.
PyObject* tracked_if_needed(EventObject* self) {
  for (PyObject* value : self->fields) {
    if (value != nullptr && may_be_tracked(value)) {
      PyObject_GC_Track(self);
      break;
    }
  }
  return reinterpret_cast<PyObject*>(self);
}

// The same for an event the engine made: its kind is a str and its run id an int, so
// only its output or error can hold anything the collector tracks.
PyObject* tracked_if_payload_needs(EventObject* self) {
  if (may_be_tracked(self->fields[kOutput]) || may_be_tracked(self->fields[kError])) {
    PyObject_GC_Track(self);
  }
  return reinterpret_cast<PyObject*>(self);
}

// A borrowed reference to field `index`, made from `unmade` on first read; null with the
// Python error set if making it failed.
PyObject* field(EventObject* self, std::size_t index) {
  PyObject*& value = self->fields[index];
  if (value != nullptr) return value;
  const Unmade& unmade = self->unmade;
  switch (index) {
    case kAgent:
      value = new_str(unmade.agent);
      break;
    case kTime:
      value = PyFloat_FromDouble(unmade.time);
      break;
    case kMessage:
      value = new_str(unmade.message);
      break;
    case kPriority:
      value = PyLong_FromLong(unmade.priority);
      break;
    case kAttempt:
      value = PyLong_FromUnsignedLong(unmade.attempt);
      break;
    case kDelay:
      value = PyFloat_FromDouble(unmade.delay);
      break;
    default:
      // Always made up front; null only once the cycle collector cleared the event.
      value = new_ref(Py_None);
      break;
  }
  return value;
}

PyObject* get_field(PyObject* self, void* closure) {
  PyObject* value = field(as_event(self), reinterpret_cast<std::size_t>(closure));
  Py_XINCREF(value);
  return value;
}

// The fields as a tuple, in order (a new reference): what equality, hashing and pickling
// compare and keep, as a dataclass's do.
PyObject* as_tuple(PyObject* self) {
  PyObject* tuple = PyTuple_New(kFieldCount);
  if (tuple == nullptr) return nullptr;
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    PyObject* value = field(as_event(self), i);
    if (value == nullptr) {
      Py_DECREF(tuple);
      return nullptr;
    }
    PyTuple_SET_ITEM(tuple, static_cast<Py_ssize_t>(i), new_ref(value));
  }
  return tuple;
}

PyObject* event_new(PyTypeObject* /*type*/, PyObject* args, PyObject* kwargs) {
  // NOLINTNEXTLINE(cppcoreguidelines-avoid-c-arrays): the C API's keyword list
  static const char* keywords[] = {"kind",    "agent",    "run_id",  "time",
                                   "output",  "error",    "message", "priority",
                                   "attempt", "delay",    nullptr};
  std::array<PyObject*, kFieldCount> given{};  // borrowed; null: not given
  if (PyArg_ParseTupleAndKeywords(args, kwargs, "OOOO|OOOOOO:Event",
                                  const_cast<char**>(keywords),  // NOLINT: the C API's type
                                  &given[kKind], &given[kAgent], &given[kRunId], &given[kTime],
                                  &given[kOutput], &given[kError], &given[kMessage],
                                  &given[kPriority], &given[kAttempt], &given[kDelay]) == 0) {
    return nullptr;
  }
  EventObject* self = allocate();
  if (self == nullptr) return nullptr;
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    // A field not given is made from its default in `unmade` (zero, empty) on first read.
    if (given[i] != nullptr) self->fields[i] = new_ref(given[i]);
  }
  for (const Field defaults_to_none : {kOutput, kError}) {
    if (self->fields[defaults_to_none] == nullptr) self->fields[defaults_to_none] = new_ref(Py_None);
  }
  return tracked_if_needed(self);
}

void event_dealloc(PyObject* object) {
  EventObject* self = as_event(object);
  if (PyObject_GC_IsTracked(object) != 0) PyObject_GC_UnTrack(object);
  for (PyObject*& value : self->fields) Py_CLEAR(value);
  self->unmade.~Unmade();
  if (!g_free_events.keep(self)) PyObject_GC_Del(object);
}

int event_traverse(PyObject* self, visitproc visit, void* arg) {
  for (PyObject* value : as_event(self)->fields) Py_VISIT(value);
  return 0;
}

int event_clear(PyObject* self) {
  for (PyObject*& value : as_event(self)->fields) Py_CLEAR(value);
  return 0;
}

// Frozen, as the dataclass it replaces was.
int event_setattro(PyObject* /*self*/, PyObject* name, PyObject* value) {
  PyErr_Format(g_frozen_error, value != nullptr ? "cannot assign to field %R" : "cannot delete field %R",
               name);
  return -1;
}

PyObject* event_richcompare(PyObject* self, PyObject* other, int op) {
  if ((op != Py_EQ && op != Py_NE) || Py_TYPE(other) != &g_event_type) Py_RETURN_NOTIMPLEMENTED;
  const py::object mine = py::reinterpret_steal<py::object>(as_tuple(self));
  if (!mine) return nullptr;
  const py::object theirs = py::reinterpret_steal<py::object>(as_tuple(other));
  if (!theirs) return nullptr;
  return PyObject_RichCompare(mine.ptr(), theirs.ptr(), op);
}

Py_hash_t event_hash(PyObject* self) {
  const py::object fields = py::reinterpret_steal<py::object>(as_tuple(self));
  return fields ? PyObject_Hash(fields.ptr()) : -1;
}

// As the dataclass's repr: every field but the error, and "..." for an event inside its
// own output.
PyObject* event_repr(PyObject* self) {
  const int entered = Py_ReprEnter(self);
  if (entered != 0) return entered > 0 ? PyUnicode_FromString("...") : nullptr;
  PyObject* repr = nullptr;
  std::array<PyObject*, kFieldCount> values{};
  bool made = true;
  for (std::size_t i = 0; i < kFieldCount && made; ++i) {
    values[i] = field(as_event(self), i);
    made = values[i] != nullptr;
  }
  if (made) {
    repr = PyUnicode_FromFormat(
        "Event(kind=%R, agent=%R, run_id=%R, time=%R, output=%R, message=%R, priority=%R, "
        "attempt=%R, delay=%R)",
        values[kKind], values[kAgent], values[kRunId], values[kTime], values[kOutput],
        values[kMessage], values[kPriority], values[kAttempt], values[kDelay]);
  }
  Py_ReprLeave(self);
  return repr;
}

PyObject* event_reduce(PyObject* self, PyObject* /*unused*/) {
  PyObject* fields = as_tuple(self);
  if (fields == nullptr) return nullptr;
  return Py_BuildValue("(ON)", reinterpret_cast<PyObject*>(&g_event_type), fields);
}

// NOLINTBEGIN(cppcoreguidelines-avoid-c-arrays): the C API's tables
PyMethodDef event_methods[] = {
    {"__reduce__", event_reduce, METH_NOARGS, "Pickles the event by its fields."},
    {nullptr, nullptr, 0, nullptr}};

PyGetSetDef event_getset[kFieldCount + 1] = {};
// NOLINTEND(cppcoreguidelines-avoid-c-arrays)

constexpr const char* kEventDoc =
    "Event(kind, agent, run_id, time, output=None, error=None, message='', priority=0, "
    "attempt=0, delay=0.0)\n"
    "--\n\n"
    "Something that happened to one agent of one run; frozen.\n\n"
    "Attributes:\n"
    "    kind: \"start\", \"finish\", \"error\", \"cancel\", \"skip\", \"review\" or \"input\" (it\n"
    "        asked a person a question with cp.interrupt: output is {\"ask\": question,\n"
    "        \"answers\": [the answers it got so far]}) for an agent, and \"end\" once, last,\n"
    "        for a run that succeeded (output holds its result). Agents of child runs\n"
    "        (nested graphs and patterns) are named \"<parent agent>/<agent>\".\n"
    "    agent: Name of the agent (None for \"end\").\n"
    "    run_id: The run it belongs to.\n"
    "    time: Seconds since the run started.\n"
    "    output: The agent's output (\"finish\") or the run's result (\"end\").\n"
    "    error: The exception the agent raised (\"error\").\n"
    "    message: Summary of the error (\"error\"), why it was skipped (\"skip\") or why it\n"
    "        needs review (\"review\"); the routes taken (a router's \"finish\").\n"
    "    priority: The agent's priority.\n"
    "    attempt: For a run's timeline (app.run, app.start): the attempt's number, from 1\n"
    "        (\"attempt\"), or the number of the attempt that failed (\"retry\").\n"
    "    delay: For \"retry\": the seconds of backoff before the next attempt.\n\n"
    "A run that records its timeline also has the steps its agents' policies take:\n"
    "\"queued\" (waiting for a slot of the limit named in message), \"attempt\", \"retry\"\n"
    "(error and message: the failure), \"fallback\" (message: the failure that led to it)\n"
    "and \"reviewing\" (its output waits for a reviewer; message: why). Streams do not carry\n"
    "these.\n\n"
    "Events compare, hash and pickle by their fields, as a frozen dataclass's would.";

}  // namespace

PyObject* new_engine_event(Event&& event, PyObject* run_id) {
  EventObject* self = allocate();
  if (self == nullptr) return nullptr;
  // An error's payload, a retried attempt's and the one a fallback follows is the exception.
  const bool failed = event.kind == EventKind::Error || event.kind == EventKind::Retry ||
                      event.kind == EventKind::Fallback;
  PyObject* payload = event.payload ? static_cast<PyObject*>(event.payload.get()) : Py_None;
  self->fields[kKind] = new_ref(g_kinds[static_cast<std::size_t>(event.kind)]);
  self->fields[kRunId] = new_ref(run_id);
  self->fields[kOutput] = new_ref(failed ? Py_None : payload);
  self->fields[kError] = new_ref(failed ? payload : Py_None);
  Unmade& unmade = self->unmade;
  unmade.agent = std::move(event.agent);
  // Most events have no message; a move, even of an empty string, is a call into libstdc++.
  if (!event.message.empty()) unmade.message = std::move(event.message);
  unmade.time = event.seconds;
  unmade.delay = event.delay;
  unmade.priority = event.priority;
  unmade.attempt = event.attempt;
  return tracked_if_payload_needs(self);
}

py::object new_end_event(std::uint64_t run_id, double seconds, py::object output) {
  EventObject* self = allocate();
  if (self == nullptr) throw py::error_already_set();
  const py::object event = py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(self));
  self->fields[kKind] = new_ref(g_end_kind);
  self->fields[kAgent] = new_ref(Py_None);
  self->fields[kRunId] = PyLong_FromUnsignedLongLong(run_id);
  if (self->fields[kRunId] == nullptr) throw py::error_already_set();
  self->fields[kOutput] = output.release().ptr();
  self->fields[kError] = new_ref(Py_None);
  self->unmade.time = seconds;
  tracked_if_payload_needs(self);
  return event;
}

void register_event_type(py::module_& m) {
  for (std::size_t k = 0; k < kEventKindCount; ++k) {
    g_kinds[k] = PyUnicode_InternFromString(to_string(static_cast<EventKind>(k)));
    if (g_kinds[k] == nullptr) throw py::error_already_set();
  }
  g_end_kind = PyUnicode_InternFromString("end");
  if (g_end_kind == nullptr) throw py::error_already_set();
  g_frozen_error = py::object(py::module_::import("dataclasses").attr("FrozenInstanceError"))
                       .release()
                       .ptr();
  for (std::size_t i = 0; i < kFieldCount; ++i) {
    event_getset[i] = {kFieldNames[i], get_field, nullptr, nullptr,
                       reinterpret_cast<void*>(i)};  // NOLINT(performance-no-int-to-ptr)
  }
  g_event_type.tp_name = "counterpoint.Event";
  g_event_type.tp_basicsize = sizeof(EventObject);
  g_event_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  g_event_type.tp_doc = kEventDoc;
  g_event_type.tp_new = event_new;
  g_event_type.tp_dealloc = event_dealloc;
  g_event_type.tp_traverse = event_traverse;
  g_event_type.tp_clear = event_clear;
  g_event_type.tp_setattro = event_setattro;
  g_event_type.tp_richcompare = event_richcompare;
  g_event_type.tp_hash = event_hash;
  g_event_type.tp_repr = event_repr;
  g_event_type.tp_methods = event_methods;
  g_event_type.tp_getset = event_getset;
  add_static_type(m, g_event_type, "Event");
  // Positional patterns (`case Event("finish", agent)`), as the dataclass allowed.
  py::tuple match_args(static_cast<std::size_t>(kFieldCount));
  for (std::size_t i = 0; i < kFieldCount; ++i) match_args[i] = py::str(kFieldNames[i]);
  if (PyDict_SetItemString(g_event_type.tp_dict, "__match_args__", match_args.ptr()) != 0) {
    throw py::error_already_set();
  }
  PyType_Modified(&g_event_type);
}

}  // namespace counterpoint::bindings
