#include "results.hpp"

#include <pybind11/stl.h>

#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {
// counterpoint.Result, registered by the Python package at import, and the two
// engine-bound result wrappers. Checked with PyObject_TypeCheck, not isinstance():
// every agent call checks its output against all three, and isinstance() on a miss
// looks up and calls type.__instancecheck__ each time (a third of a microsecond).
PyTypeObject* g_result_type = nullptr;
PyTypeObject* g_routed_type = nullptr;
PyTypeObject* g_delegation_type = nullptr;
// counterpoint's interrupt signal (cp.interrupt raises it), registered at import.
PyTypeObject* g_interrupt_type = nullptr;

bool is_a(py::handle object, PyTypeObject* type) {
  return type != nullptr && PyObject_TypeCheck(object.ptr(), type);
}

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
  if (is_a(result, g_result_type)) out.usage = usage_of(result);
  if (is_a(result, g_routed_type)) {
    auto& routed = result.cast<Routed&>();
    out.kind = AgentResult::Kind::Routed;
    out.value = to_payload(routed.value);
    out.routes = routed.routes;
  } else if (is_a(result, g_delegation_type)) {
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
      outcome.finished_at = result.finished_at;
      completion.resolve(std::move(outcome));
      return;
    }
    case AgentResult::Kind::Routed: {
      Outcome outcome = Outcome::success(std::move(result.value));
      outcome.routed = true;
      outcome.routes = std::move(result.routes);
      outcome.usage = std::move(result.usage);
      outcome.finished_at = result.finished_at;
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

Outcome raised_outcome(py::handle error, Failure failure) {
  if (!is_a(error, g_interrupt_type)) return Outcome::failed(std::move(failure));
  return Outcome::needs_input(to_payload(error.attr("question")), "awaits input");
}

void register_results(py::module_& m) {
  m.def("set_interrupt_type",
        [](const py::type& type) {
          g_interrupt_type = reinterpret_cast<PyTypeObject*>(type.inc_ref().ptr());
        },
        "Tells the engine which exception asks a person a question (cp.interrupt's).");
  m.def("set_result_type",
        [](const py::type& type) {
          g_result_type = reinterpret_cast<PyTypeObject*>(type.inc_ref().ptr());
        },
        "Tells the engine which class carries usage (counterpoint.Result).");
  py::class_<FailedInput>(m, "Failed",
                          "Stands in for the output of a predecessor that failed (settled joins).")
      .def(py::init<py::object>(), py::arg("error"))
      .def_readonly("error", &FailedInput::error)
      .def("__repr__", [](const FailedInput& f) {
        return "Failed(" + std::string(py::repr(f.error)) + ")";
      });
  auto routed = py::class_<Routed>(m, "Routed")
      .def(py::init<py::object, std::vector<std::string>>(), py::arg("value"), py::arg("routes"))
      .def_readonly("value", &Routed::value)
      .def_readonly("routes", &Routed::routes);
  auto delegation = py::class_<Delegation>(m, "Delegation")
      .def(py::init<std::shared_ptr<CompiledGraph>, py::object, std::shared_ptr<Agent>>(),
           py::arg("graph"), py::arg("input"), py::arg("then") = nullptr);
  // Held for the life of the process, like the module that owns them.
  g_routed_type = reinterpret_cast<PyTypeObject*>(routed.inc_ref().ptr());
  g_delegation_type = reinterpret_cast<PyTypeObject*>(delegation.inc_ref().ptr());
}

}  // namespace counterpoint::bindings
