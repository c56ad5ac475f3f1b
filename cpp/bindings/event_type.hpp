#pragma once
// counterpoint.Event, a native type (event_type.cpp): the object a stream yields for each
// event of a run. The engine makes thousands a second; a Python class cost most of what
// streaming fast agents did (allocating a ten-slot instance, a float for each time, a
// string for each agent, freeing them all), so an event keeps the engine's own fields and
// makes each Python value only when it is read.
#include <Python.h>

#include <string>

#include <pybind11/pybind11.h>

#include "counterpoint/event.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// Requires the GIL: `object` with a new reference.
inline PyObject* new_ref(PyObject* object) {
  Py_INCREF(object);
  return object;
}

// Requires the GIL: a new str, or null with the Python error set.
inline PyObject* new_str(const std::string& text) {
  return PyUnicode_FromStringAndSize(text.data(), static_cast<Py_ssize_t>(text.size()));
}

// Requires the GIL. A new counterpoint.Event taking over `event`'s agent and message
// (the caller's event is left moved-from); `run_id` is shared by every event of a run.
// Null with the Python error set if it could not be made.
PyObject* new_engine_event(Event&& event, PyObject* run_id);

// Requires the GIL. A run's last event: kind "end", no agent, the run's output.
py::object new_end_event(std::uint64_t run_id, double seconds, py::object output);

void register_event_type(py::module_& m);

}  // namespace counterpoint::bindings
