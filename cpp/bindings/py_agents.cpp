#include "py_agents.hpp"

#include <chrono>

#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "loop_dispatcher.hpp"
#include "observer.hpp"
#include "py_payload.hpp"
#include "results.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {
std::atomic<std::int64_t> g_inline_threshold_ns{20'000};
// A call this many times over the threshold counts as a blocking call; after
// kBlockingCalls of them the agent never runs inline again. One is not enough: the
// thread may simply have been descheduled.
constexpr std::int64_t kSlowFactor = 50;
constexpr std::uint32_t kBlockingCalls = 3;

using SteadyClock = std::chrono::steady_clock;
}  // namespace

PyRef::~PyRef() { release_object(object_); }

std::shared_ptr<RunContext> make_run_context(std::shared_ptr<LoopDispatcher> dispatcher,
                                             py::object observer) {
  PyObject* context = PyContext_CopyCurrent();
  if (context == nullptr) throw py::error_already_set();
  return std::make_shared<RunContext>(
      std::move(dispatcher), py::reinterpret_steal<py::object>(context),
      observer.is_none() ? nullptr : std::make_shared<const PyRef>(std::move(observer)));
}

PyObject* copy_run_context(const Invocation& invocation) {
  const auto* run = static_cast<const RunContext*>(invocation.run_context.get());
  if (run == nullptr) return nullptr;
  return PyContext_Copy(run->caller_context.get().ptr());
}

SyncAgent::SyncAgent(py::object callable, Dispatch dispatch)
    : callable_(std::move(callable)), dispatch_(dispatch) {}

bool SyncAgent::runs_inline() const noexcept {
  if (dispatch_ == Dispatch::Inline) return true;
  if (dispatch_ == Dispatch::Thread ||
      blocking_calls_.load(std::memory_order_relaxed) >= kBlockingCalls) {
    return false;
  }
  const std::int64_t mean = mean_ns_.load(std::memory_order_relaxed);
  return mean >= 0 && mean < g_inline_threshold_ns.load(std::memory_order_relaxed);
}

double SyncAgent::mean_call_seconds() const noexcept {
  const std::int64_t mean = mean_ns_.load(std::memory_order_relaxed);
  return mean < 0 ? -1.0 : static_cast<double>(mean) * 1e-9;
}

void SyncAgent::set_inline_threshold(double seconds) noexcept {
  g_inline_threshold_ns.store(static_cast<std::int64_t>(seconds * 1e9), std::memory_order_relaxed);
}

double SyncAgent::inline_threshold() noexcept {
  return static_cast<double>(g_inline_threshold_ns.load(std::memory_order_relaxed)) * 1e-9;
}

void SyncAgent::record(std::int64_t nanoseconds) noexcept {
  if (nanoseconds > kSlowFactor * g_inline_threshold_ns.load(std::memory_order_relaxed)) {
    blocking_calls_.fetch_add(1, std::memory_order_relaxed);
  }
  const std::int64_t mean = mean_ns_.load(std::memory_order_relaxed);
  // A racy update loses a sample at worst; the average only steers dispatch.
  mean_ns_.store(mean < 0 ? nanoseconds : (mean * 7 + nanoseconds) / 8, std::memory_order_relaxed);
}

void SyncAgent::invoke(Invocation invocation) {
  if (runs_inline() && python_alive()) {
    call(invocation);
    return;
  }
  // std::function needs a copyable target; the invocation itself is move-only.
  auto pending = std::make_shared<Invocation>(std::move(invocation));
  Runtime::instance().pool().submit(
      [self = shared_from_this(), pending] { self->call(*pending); });
}

namespace {
// The agent whose Python code this thread is running, if any.
thread_local SyncAgent* t_running_agent = nullptr;
}  // namespace

void SyncAgent::note_wait_for_run() noexcept {
  if (t_running_agent != nullptr) {
    t_running_agent->blocking_calls_.store(kBlockingCalls, std::memory_order_relaxed);
  }
}

void call_python_on_pool(std::function<void()> body, const char* what) {
  Runtime::instance().pool().submit([body = std::move(body), what] {
    if (!python_alive()) return;
    ScopedGil gil;
    try {
      body();
    } catch (py::error_already_set& error) {
      error.discard_as_unraisable(what);
    }
    drain_released_objects();
  });
}

bool ended_before_call(Completion& completion) {
  if (completion.run_ended()) {
    completion.cancelled();
    return true;
  }
  if (!python_alive()) {
    completion.fail(Failure{"the Python interpreter is shutting down", {}});
    return true;
  }
  return false;
}

void SyncAgent::call(Invocation& invocation) {
  if (ended_before_call(invocation.completion)) return;
  AgentResult output;
  Outcome failed;
  bool succeeded = false;
  SteadyClock::time_point finished;
  {
    ScopedGil gil;
    // Timed from the body's start, after the GIL was taken and the call observed: waiting
    // for the GIL and an observer's work (tracing, callbacks) are not the agent's time,
    // and would make a fast agent look slow to dispatch="auto".
    SteadyClock::time_point started = SteadyClock::now();
    try {
      // Raw references only across the call: see call_python.
      PyObject* argument = inputs_to_python(invocation.inputs).release().ptr();
      if (observe_call(invocation, argument)) started = SteadyClock::now();
      PyObject* context = copy_run_context(invocation);
      if (context != nullptr && PyContext_Enter(context) != 0) {
        Py_DECREF(context);
        Py_DECREF(argument);
        throw py::error_already_set();
      }
      SyncAgent* const outer_agent = t_running_agent;  // agents may call graphs of agents
      t_running_agent = this;
      PyObject* raw = call_python(callable_.get().ptr(), argument);
      t_running_agent = outer_agent;
      if (context != nullptr) {
        PyContext_Exit(context);
        Py_DECREF(context);
      }
      Py_DECREF(argument);
      if (raw == nullptr) throw py::error_already_set();
      py::object result = py::reinterpret_steal<py::object>(raw);
      if (PyCoro_CheckExact(result.ptr())) {
        result.attr("close")();
        const std::string message =
            "agent '" + std::string(invocation.agent_name) +
            "' returned a coroutine from a plain function; define it with `async def` so "
            "counterpoint awaits it on an event loop";
        PyErr_SetString(PyExc_TypeError, message.c_str());
        throw py::error_already_set();
      }
      output = interpret_result(std::move(result));
      succeeded = true;
    } catch (py::error_already_set& error) {
      Failure failure = failure_from(error);
      failed = raised_outcome(error.value(), std::move(failure));
    } catch (const std::exception& error) {
      failed = Outcome::failed(Failure{error.what(), {}});
    }
    // Also the agent's recorded finish (Outcome::finished_at): one clock read serves both.
    finished = SteadyClock::now();
    record(std::chrono::duration_cast<std::chrono::nanoseconds>(finished - started).count());
    invocation.inputs.items.clear();  // drop the references while the GIL is held
    drain_released_objects();
  }
  if (succeeded) {
    output.finished_at = finished;
    deliver(invocation.completion, std::move(output), invocation.cancellation);
  } else {
    failed.finished_at = finished;
    invocation.completion.resolve(std::move(failed));
  }
}

void AsyncAgent::invoke(Invocation invocation) {
  const auto* run = static_cast<const RunContext*>(invocation.run_context.get());
  if (run == nullptr || !run->dispatcher) {
    invocation.completion.fail(Failure{
        "async agent started without an event loop; this is a counterpoint bug", {}});
    return;
  }
  run->dispatcher->submit(function_, std::move(invocation));
}

void SubgraphAgent::invoke(Invocation invocation) {
  Payload input;
  const bool joined = invocation.inputs.kind == Inputs::Kind::Joined;
  if (joined || has_observer(invocation)) {
    if (!python_alive()) {
      invocation.completion.fail(Failure{"the Python interpreter is shutting down", {}});
      return;
    }
    ScopedGil gil;
    py::object argument = joined ? inputs_to_python(invocation.inputs)
                                 : from_payload(invocation.inputs.items.front().value);
    observe_call(invocation, argument);  // its child run's agents then nest under this call
    input = joined ? to_payload(std::move(argument)) : invocation.inputs.items.front().value;
    invocation.inputs.items.clear();
  } else {
    input = invocation.inputs.items.front().value;
  }
  auto cancel_child = invocation.completion.delegate(graph_, std::move(input));
  if (cancel_child && invocation.cancellation) {
    invocation.cancellation->on_cancel(std::move(cancel_child));
  }
}

void register_agents(py::module_& m) {
  py::class_<Agent, std::shared_ptr<Agent>>(m, "Agent");
  py::class_<SyncAgent, Agent, std::shared_ptr<SyncAgent>>(m, "SyncAgent")
      .def(py::init<py::object, Dispatch>(), py::arg("callable"),
           py::arg("dispatch") = Dispatch::Auto)
      .def_property_readonly("runs_inline", &SyncAgent::runs_inline)
      .def_property_readonly("mean_call_seconds", &SyncAgent::mean_call_seconds)
      .def_static("set_inline_threshold", &SyncAgent::set_inline_threshold)
      .def_static("inline_threshold", &SyncAgent::inline_threshold);
  py::class_<AsyncAgent, Agent, std::shared_ptr<AsyncAgent>>(m, "AsyncAgent")
      .def(py::init<py::object>(), py::arg("coroutine_function"));
  py::class_<FutureAgent, Agent, std::shared_ptr<FutureAgent>>(m, "FutureAgent")
      .def(py::init<py::object>(), py::arg("submit"));
}

}  // namespace counterpoint::bindings
