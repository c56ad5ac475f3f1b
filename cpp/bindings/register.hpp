#pragma once
#include <pybind11/pybind11.h>

namespace counterpoint::bindings {
namespace py = pybind11;

// Readies a static type (one filled in C, as CPython's own are: no per-call machinery)
// and adds it to the module as `name`. It lives as long as the process.
inline void add_static_type(py::module_& m, PyTypeObject& type, const char* name) {
  if (PyType_Ready(&type) != 0) throw py::error_already_set();
  Py_INCREF(&type);
  m.add_object(name, reinterpret_cast<PyObject*>(&type));
}

// One per binding file; module.cpp calls them in dependency order.
void register_enums(py::module_& m);
void register_records(py::module_& m);
void register_event_type(py::module_& m);
void register_events(py::module_& m);
void register_agents(py::module_& m);
void register_results(py::module_& m);
void register_loop_dispatcher(py::module_& m);
void register_in_context(py::module_& m);
void register_observer(py::module_& m);
void register_checkpoints(py::module_& m);
void register_policies(py::module_& m);
void register_graph(py::module_& m);
void register_runs(py::module_& m);
void register_streams(py::module_& m);
void register_async_chunks(py::module_& m);
void register_runtime(py::module_& m);
}  // namespace counterpoint::bindings
