#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "counterpoint's native engine (private; use the `counterpoint` package)";
  counterpoint::bindings::register_agents(m);
  counterpoint::bindings::register_results(m);
  counterpoint::bindings::register_loop_dispatcher(m);
  counterpoint::bindings::register_checkpoints(m);
  counterpoint::bindings::register_graph(m);
  counterpoint::bindings::register_policies(m);
  counterpoint::bindings::register_runtime(m);
}
