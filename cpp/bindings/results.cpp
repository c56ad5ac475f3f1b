#include "results.hpp"

#include <pybind11/stl.h>

#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {
// counterpoint.Result, registered by the Python package at import.
py::handle g_result_type;

Usage usage_of(py::handle result) {
  Usage usage;
  py::object reported = result.attr("usage");
  if (reported.is_none()) return usage;
  for (auto item : py::reinterpret_borrow<py::dict>(reported)) {
    usage.emplace_back(py::str(item.first), item.second.cast<double>());
  }
  return usage;
}
}  // namespace

AgentResult interpret_result(py::object result) {
  AgentResult out;
  if (g_result_type && py::isinstance(result, g_result_type)) out.usage = usage_of(result);
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

void deliver(Completion& completion, AgentResult result,
             const std::shared_ptr<CancelToken>& cancellation) {
  switch (result.kind) {
    case AgentResult::Kind::Value: {
      Outcome outcome = Outcome::success(std::move(result.value));
      outcome.usage = std::move(result.usage);
      completion.resolve(std::move(outcome));
      return;
    }
    case AgentResult::Kind::Routed: {
      Outcome outcome = Outcome::success(std::move(result.value));
      outcome.routed = true;
      outcome.routes = std::move(result.routes);
      outcome.usage = std::move(result.usage);
      completion.resolve(std::move(outcome));
      return;
    }
    case AgentResult::Kind::Delegated: {
      auto cancel_child =
          completion.delegate(std::move(result.graph), std::move(result.value), std::move(result.then));
      if (cancel_child && cancellation) cancellation->on_cancel(std::move(cancel_child));
      return;
    }
  }
}

void register_results(py::module_& m) {
  m.def("set_result_type", [](py::object type) { g_result_type = type.release(); },
        "Tells the engine which class carries usage (counterpoint.Result).");
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
