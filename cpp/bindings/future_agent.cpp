#include <memory>
#include <mutex>

#include "gil.hpp"
#include "observer.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

// One submitted call. The future's done callback owns it; the future is kept here
// only until it settles, to cancel it (keeping it longer would be a reference cycle:
// the future holds its callbacks).
struct SubmittedCall {
  std::mutex mutex;
  Completion completion;
  std::shared_ptr<CancelToken> cancellation;
  std::shared_ptr<const PyRef> future;  // null once settled: nothing left to cancel

  // Requires the GIL. Takes the completion to resolve, once, and drops the future.
  Completion take_completion() {
    std::lock_guard<std::mutex> lock(mutex);
    future.reset();
    return std::move(completion);
  }
};

py::handle future_type() {
  // Interpreter-lifetime, like the module that defines it.
  static PyObject* type =
      py::object(py::module_::import("concurrent.futures").attr("Future")).release().ptr();
  return type;
}

// Requires the GIL. Resolves the call with the future's outcome; the GIL is released
// around the resolution, which may take engine locks.
void settle(SubmittedCall& call, py::handle future) {
  Completion completion = call.take_completion();
  if (completion.resolved()) return;  // a future calls its callbacks once; defensive
  AgentResult output;
  Outcome failed;
  bool succeeded = false;
  bool cancelled = false;
  try {
    if (future.attr("cancelled")().cast<bool>()) {
      cancelled = true;
    } else {
      py::object error = future.attr("exception")();
      if (error.is_none()) {
        output = interpret_result(future.attr("result")());
        succeeded = true;
      } else {
        PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
        throw py::error_already_set();
      }
    }
  } catch (py::error_already_set& error) {
    Failure failure = failure_from(error);
    failed = raised_outcome(error.value(), std::move(failure));
  } catch (const std::exception& error) {
    failed = Outcome::failed(Failure{error.what(), {}});
  }
  const std::shared_ptr<CancelToken> cancellation = call.cancellation;
  py::gil_scoped_release release;
  if (cancelled) {
    completion.cancelled();
  } else if (succeeded) {
    deliver(completion, std::move(output), cancellation);
  } else {
    completion.resolve(std::move(failed));
  }
}

// Cancels the call's future unless it has settled. Called from a timeout or a run's
// end, on threads that must not wait for the GIL, so the cancel() runs on the pool.
void cancel_submitted(const std::weak_ptr<SubmittedCall>& weak) {
  const std::shared_ptr<SubmittedCall> call = weak.lock();
  if (!call) return;
  std::shared_ptr<const PyRef> future;
  {
    std::lock_guard<std::mutex> lock(call->mutex);
    future = call->future;
  }
  if (!future) return;
  call_python_on_pool([future] { future->get().attr("cancel")(); },
                      "counterpoint: cancelling a submitted agent call");
}

}  // namespace

void FutureAgent::invoke(Invocation invocation) {
  if (ended_before_call(invocation.completion)) return;
  ScopedGil gil;
  py::object future;
  try {
    // The submission runs in the run's context, as any agent call does (tracing,
    // callbacks); the work it starts carries what it needs itself.
    py::object argument = inputs_to_python(invocation.inputs);
    observe_call(invocation, argument);
    PyObject* context = copy_run_context(invocation);
    if (context != nullptr && PyContext_Enter(context) != 0) {
      Py_DECREF(context);
      throw py::error_already_set();
    }
    PyObject* raw = call_python(submit_.get().ptr(), argument.ptr());
    if (context != nullptr) {
      PyContext_Exit(context);
      Py_DECREF(context);
    }
    if (raw == nullptr) throw py::error_already_set();
    future = py::reinterpret_steal<py::object>(raw);
    if (!py::isinstance(future, future_type())) {
      const std::string message =
          "agent '" + invocation.agent_name +
          "': its submit() must return a concurrent.futures.Future, got " +
          std::string(py::str(py::type::handle_of(future).attr("__name__")));
      PyErr_SetString(PyExc_TypeError, message.c_str());
      throw py::error_already_set();
    }
  } catch (py::error_already_set& error) {
    Failure failure = failure_from(error);
    Outcome failed = raised_outcome(error.value(), std::move(failure));
    invocation.inputs.items.clear();  // drop the references while the GIL is held
    py::gil_scoped_release release;
    invocation.completion.resolve(std::move(failed));
    return;
  }
  invocation.inputs.items.clear();
  auto call = std::make_shared<SubmittedCall>();
  call->cancellation = invocation.cancellation;
  call->future = std::make_shared<const PyRef>(future);
  // Registered before the done callback, while this thread still owns the completion:
  // if the run has ended (or the invocation been abandoned) meanwhile, the work is
  // cancelled at once, and the done callback then reports the cancel.
  const std::weak_ptr<SubmittedCall> weak = call;
  invocation.completion.when_run_ends([weak] { cancel_submitted(weak); });
  if (invocation.cancellation) {
    invocation.cancellation->on_cancel([weak] { cancel_submitted(weak); });
  }
  call->completion = std::move(invocation.completion);
  try {
    // Settles at once, on this thread, if the work is already done.
    future.attr("add_done_callback")(
        py::cpp_function([call](py::handle done) { settle(*call, done); }));
  } catch (py::error_already_set& error) {  // a Future subclass refusing the callback
    Failure failure = failure_from(error);
    Outcome failed = raised_outcome(error.value(), std::move(failure));
    Completion completion = call->take_completion();
    try {
      future.attr("cancel")();  // nobody will follow the work
    } catch (py::error_already_set& unraisable) {
      unraisable.discard_as_unraisable("counterpoint: cancelling a submitted agent call");
    }
    py::gil_scoped_release release;
    completion.resolve(std::move(failed));
  }
}

}  // namespace counterpoint::bindings
