#pragma once
#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/payload.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// Both require the GIL.
Payload to_payload(py::object object);
py::object from_payload(const Payload& payload);
// RunInput / Single: the value itself; Joined: {predecessor_name: output}. A failed
// predecessor of a settled join appears as counterpoint.Failed(error).
py::object inputs_to_python(const Inputs& inputs);
// Captures the active Python exception as an agent failure ("TypeError: bad input").
Failure failure_from(py::error_already_set& error);

}  // namespace counterpoint::bindings
