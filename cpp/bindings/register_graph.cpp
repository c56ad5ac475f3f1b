// Node specs and compiled graphs: one typed spec per node, validated by the engine once.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/stl.h>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "policies.hpp"
#include "py_agents.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// One agent of a graph as Python declared it; compile() turns the policies into native
// wrappers around the agent.
struct PyNodeSpec {
  std::string name;
  std::shared_ptr<Agent> agent;
  std::vector<std::string> after;
  std::optional<int> priority;  // unset: inherit the highest of the predecessors'
  JoinMode join = JoinMode::All;
  ErrorMode on_error = ErrorMode::Inherit;
  std::optional<PolicySpec> policy;
  std::optional<ReviewSpec> review;
};

std::shared_ptr<CompiledGraph> compile_graph(const std::vector<PyNodeSpec>& nodes,
                                             ErrorMode on_error) {
  GraphSpec spec;
  spec.on_error = on_error;
  for (const PyNodeSpec& node : nodes) {
    NodeSpec& native = spec.add(node.name, node.agent, node.after, node.priority);
    native.join = node.join;
    native.on_error = node.on_error;
    if (node.policy) native.policy = agent_policy(*node.policy);
    if (node.review) {
      native.wrap = [review = *node.review](std::shared_ptr<Agent> agent) {
        return review_gate(std::move(agent), review);
      };
    }
  }
  // Wiring enters the engine's arena, which may wait for a worker that is busy running an
  // agent and needs the GIL.
  py::gil_scoped_release nogil;
  return CompiledGraph::compile(spec);
}

}  // namespace

void register_graph(py::module_& m) {
  // GraphError carries the node name; the Python layer turns it into cp.GraphError.
  static PyObject* invalid_graph =
      PyErr_NewException("counterpoint._core.InvalidGraph", PyExc_ValueError, nullptr);
  m.add_object("InvalidGraph", py::reinterpret_borrow<py::object>(invalid_graph));
  // pybind11 calls translators with an exception_ptr by value.
  py::register_local_exception_translator([](std::exception_ptr error) {  // NOLINT(performance-unnecessary-value-param)
    try {
      if (error) std::rethrow_exception(error);
    } catch (const GraphError& e) {
      PyErr_SetObject(invalid_graph, py::make_tuple(e.what(), e.node()).ptr());
    }
  });

  py::class_<PyNodeSpec>(m, "NodeSpec", "One agent of a graph, with its policies as data.")
      .def(py::init([](std::string name, std::shared_ptr<Agent> agent,
                       std::vector<std::string> after, std::optional<int> priority,
                       JoinMode join, ErrorMode on_error, std::optional<PolicySpec> policy,
                       std::optional<ReviewSpec> review) {
             return PyNodeSpec{std::move(name), std::move(agent),  std::move(after),
                               priority,        join,              on_error,
                               std::move(policy), std::move(review)};
           }),
           py::arg("name"), py::arg("agent"), py::kw_only(),
           py::arg("after") = std::vector<std::string>{}, py::arg("priority") = py::none(),
           py::arg("join") = JoinMode::All, py::arg("on_error") = ErrorMode::Inherit,
           py::arg("policy") = py::none(), py::arg("review") = py::none())
      .def_readonly("name", &PyNodeSpec::name)
      .def_readonly("after", &PyNodeSpec::after)
      .def_readonly("priority", &PyNodeSpec::priority);

  py::class_<CompiledGraph, std::shared_ptr<CompiledGraph>>(m, "CompiledGraph")
      .def(py::init(&compile_graph), py::arg("nodes"), py::arg("on_error") = ErrorMode::FailRun)
      .def_property_readonly("names",
                             [](const CompiledGraph& g) {
                               std::vector<std::string> names;
                               for (const auto& node : g.plan().nodes()) names.push_back(node.name);
                               return names;
                             })
      .def("plan_json", [](const CompiledGraph& g) { return g.plan().to_json(); });
  // After CompiledGraph, whose type its constructor names.
  py::class_<SubgraphAgent, Agent, std::shared_ptr<SubgraphAgent>>(m, "SubgraphAgent")
      .def(py::init<std::shared_ptr<CompiledGraph>>(), py::arg("graph"));
}

}  // namespace counterpoint::bindings
