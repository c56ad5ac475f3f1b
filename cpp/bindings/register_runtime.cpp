// Process-wide controls: versions, statistics and the interpreter-exit shutdown.
#include <chrono>

#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

void register_runtime(py::module_& m) {
  Runtime::instance().pool().set_thread_exit_hook([] { forget_thread_state(); });

  m.def("tbb_runtime_version", &Runtime::tbb_runtime_version);
  m.def("tbb_runtime_interface_version", &Runtime::tbb_runtime_interface_version);
  m.def("tbb_compiled_interface_version", &Runtime::tbb_compiled_interface_version);
  m.def("stats", [] {
    Runtime& runtime = Runtime::instance();
    py::dict stats;
    stats["live_runs"] = runtime.live_runs();
    stats["inflight_invocations"] = runtime.inflight_invocations();
    stats["pool_threads"] = runtime.pool().threads();
    stats["idle_pool_threads"] = runtime.pool().idle_threads();
    stats["accepting"] = runtime.accepting();
    return stats;
  });
  m.def(
      "shutdown",
      [](double drain_timeout_seconds) {
        // First stop intake and interrupt every live run, while agents can still
        // finish normally: a run must end interrupted, not failed by an agent that
        // found the interpreter gone. Then stop native threads from taking the GIL
        // before the interpreter starts to finalize, and drain without holding it, so
        // agents can return.
        bool drained;
        {
          py::gil_scoped_release nogil;
          Runtime::instance().interrupt_all();
        }
        mark_shutting_down();
        {
          py::gil_scoped_release nogil;
          drained = Runtime::instance().shutdown(std::chrono::milliseconds(
              static_cast<long long>(drain_timeout_seconds * 1000)));
        }
        drain_released_objects();
        return drained;
      },
      py::arg("drain_timeout"),
      "Interrupts every run and waits up to drain_timeout seconds for running agents to return.");
}

}  // namespace counterpoint::bindings
