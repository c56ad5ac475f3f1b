#include "results.hpp"

#include <pybind11/stl.h>

#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

AgentResult interpret_result(py::object result) {
  AgentResult out;
  if (py::isinstance<Routed>(result)) {
    auto& routed = result.cast<Routed&>();
    out.kind = AgentResult::Kind::Routed;
    out.value = to_payload(routed.value);
    out.routes = routed.routes;
  } else if (py::isinstance<Delegation>(result)) {
    auto& delegation = result.cast<Delegation&>();
    out.kind = AgentResult::Kind::Delegated;
    out.value = to_payload(delegation.input);
    out.graph = delegation.graph;
    out.then = delegation.then;
  } else {
    out.value = to_payload(std::move(result));
  }
  return out;
}

void deliver(Completion& completion, AgentResult result) {
  switch (result.kind) {
    case AgentResult::Kind::Value:
      completion.succeed(std::move(result.value));
      return;
    case AgentResult::Kind::Routed:
      completion.succeed_routed(std::move(result.value), result.routes);
      return;
    case AgentResult::Kind::Delegated:
      completion.delegate(std::move(result.graph), std::move(result.value), std::move(result.then));
      return;
  }
}

void register_results(py::module_& m) {
  py::class_<FailedInput>(m, "Failed",
                          "Stands in for the output of a predecessor that failed (settled joins).")
      .def(py::init<py::object>(), py::arg("error"))
      .def_readonly("error", &FailedInput::error)
      .def("__repr__", [](const FailedInput& f) {
        return "Failed(" + std::string(py::repr(f.error)) + ")";
      });
  py::class_<Routed>(m, "Routed")
      .def(py::init<py::object, std::vector<std::string>>(), py::arg("value"), py::arg("routes"))
      .def_readonly("value", &Routed::value)
      .def_readonly("routes", &Routed::routes);
  py::class_<Delegation>(m, "Delegation")
      .def(py::init<std::shared_ptr<CompiledGraph>, py::object, std::shared_ptr<Agent>>(),
           py::arg("graph"), py::arg("input"), py::arg("then") = nullptr);
}

}  // namespace counterpoint::bindings
