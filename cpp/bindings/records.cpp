#include "records.hpp"

#include <array>
#include <optional>

#include <structmember.h>

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

namespace {

// counterpoint.Event, in the order of its fields (its positional arguments).
constexpr std::array<const char*, 8> kEventFields = {
    "kind", "agent", "run_id", "time", "output", "error", "message", "priority"};
constexpr std::size_t kOutputField = 4;
constexpr std::size_t kErrorField = 5;
constexpr std::size_t kEventKinds = static_cast<std::size_t>(EventKind::Message) + 1;

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
// finish mostly comes in the same batch as its start, a few events later.
class AgentNames {
 public:
  // A new reference, or null with the Python error set.
  PyObject* get(const std::string& name) {
    for (const Entry& entry : recent_) {
      if (entry.name != nullptr && *entry.name == name) return new_ref(entry.text.ptr());
    }
    PyObject* text = new_str(name);
    if (text == nullptr) return nullptr;
    recent_[next_] = Entry{&name, py::reinterpret_borrow<py::object>(text)};
    next_ = (next_ + 1) % recent_.size();
    return text;
  }

 private:
  struct Entry {
    const std::string* name = nullptr;  // in the batch's events, which outlive this
    py::object text;
  };
  std::array<Entry, 8> recent_;
  std::size_t next_ = 0;
};

py::object event_object(const Event& event, PyObject* run_id, AgentNames& names) {
  const bool failed = event.kind == EventKind::Error;
  return new_event({new_ref(g_event.kinds[static_cast<std::size_t>(event.kind)]),
                    names.get(event.agent), new_ref(run_id), PyFloat_FromDouble(event.seconds),
                    failed ? new_ref(Py_None) : payload_ref(event.payload),
                    failed ? payload_ref(event.payload) : new_ref(Py_None),
                    new_str(event.message), PyLong_FromLong(event.priority)});
}

// {agent path: output}, a new reference (null with the Python error set).
PyObject* update_object(const Event& event, AgentNames& names) {
  const py::object update = py::reinterpret_steal<py::object>(PyDict_New());
  const py::object name = py::reinterpret_steal<py::object>(names.get(event.agent));
  if (!update || !name) return nullptr;
  PyObject* output = event.payload ? static_cast<PyObject*>(event.payload.get()) : Py_None;
  if (PyDict_SetItem(update.ptr(), name.ptr(), output) != 0) return nullptr;
  return update.inc_ref().ptr();
}

}  // namespace

void append_events(const py::list& into, const std::vector<Event>& events, EventForm form) {
  AgentNames names;
  if (form == EventForm::Update) {
    for (const Event& event : events) {
      if (event.kind != EventKind::Finish) continue;
      const py::object update = py::reinterpret_steal<py::object>(update_object(event, names));
      if (!update || PyList_Append(into.ptr(), update.ptr()) != 0) {
        throw py::error_already_set();
      }
    }
    return;
  }
  // Every event of a stream carries its root run's id: one int for all of them.
  py::object run_id;
  std::uint64_t run_id_of = 0;
  for (const Event& event : events) {
    if (!run_id || event.run_id != run_id_of) {
      run_id = py::int_(event.run_id);
      run_id_of = event.run_id;
    }
    if (PyList_Append(into.ptr(), event_object(event, run_id.ptr(), names).ptr()) != 0) {
      throw py::error_already_set();
    }
  }
}

py::object end_event_or_report(const RunHandle& run) {
  if (run.status() != RunStatus::Succeeded) return py::cast(run_report(run));
  return new_event({new_ref(g_event.end), new_ref(Py_None),
                    PyLong_FromUnsignedLongLong(run.id()), PyFloat_FromDouble(run.elapsed()),
                    run_report(run).output.release().ptr(), new_ref(Py_None),
                    PyUnicode_FromStringAndSize("", 0), PyLong_FromLong(0)});
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
      .finalize();
  py::native_enum<EventForm>(m, "EventForm", "enum.Enum", "What a stream takes its events as.")
      .value("event", EventForm::Event)
      .value("update", EventForm::Update)
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
  m.def("set_event_type", &set_event_type,
        "Tells the engine which class its streamed events are (counterpoint.Event).");
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
  py::class_<RunEnd>(m, "RunEnd", "A run that ended.")
      .def_readonly("run_id", &RunEnd::run_id)
      .def_readonly("key", &RunEnd::key)
      .def_readonly("status", &RunEnd::status);
}

}  // namespace counterpoint::bindings
