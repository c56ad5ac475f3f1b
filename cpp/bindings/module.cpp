#include "register.hpp"

PYBIND11_MODULE(_core, m) {
  m.doc() = "counterpoint's native engine (private; use the `counterpoint` package)";
  using namespace counterpoint::bindings;
  register_enums(m);
  register_records(m);
  register_event_type(m);  // counterpoint.Event
  register_events(m);    // EventKinds, EventForm, EventBatch: what streams carry
  register_agents(m);    // Agent, the base every other agent binding refers to
  register_policies(m);  // PolicySpec, ReviewSpec: parts of a NodeSpec
  register_graph(m);
  register_results(m);
  register_loop_dispatcher(m);
  register_in_context(m);  // InContext: a coroutine call stepped in its own context
  register_observer(m);
  register_checkpoints(m);
  register_runs(m);
  register_streams(m);  // Stream, start_stream: runs streamed to Python
  register_async_chunks(m);  // AsyncChunks: what astream returns
  register_runtime(m);
}
