#include "observer.hpp"

#include <utility>

#include "gil.hpp"
#include "py_payload.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

NodeStatus status_of(const Outcome& outcome) noexcept {
  switch (outcome.kind) {
    case Outcome::Kind::Succeeded: return NodeStatus::Succeeded;
    case Outcome::Kind::Cancelled: return NodeStatus::Cancelled;
    case Outcome::Kind::NeedsReview: return NodeStatus::NeedsReview;
    case Outcome::Kind::NeedsInput: return NodeStatus::NeedsInput;
    case Outcome::Kind::Failed: break;
  }
  return outcome.failure.kind == FailureKind::Timeout ? NodeStatus::TimedOut : NodeStatus::Failed;
}

// Tells the observer how the call ended, then passes the outcome on unchanged. Holds the
// original completion: if this resolver is dropped unresolved, that completion fails the
// agent, as any dropped invocation does.
class ObservedOutcome final : public Resolver {
 public:
  ObservedOutcome(std::shared_ptr<const PyRef> observer, py::object call)
      : observer_(std::move(observer)), call_(std::move(call)) {}
  void hold(Completion original) { original_ = std::move(original); }

  void resolve(Outcome outcome) override {
    if (python_alive()) {
      ScopedGil gil;
      try {
        auto& call = call_.get().cast<ObservedCall&>();
        call.status = status_of(outcome);
        const bool waits = outcome.kind == Outcome::Kind::NeedsReview ||
                           outcome.kind == Outcome::Kind::NeedsInput;
        if (outcome.kind == Outcome::Kind::Succeeded || waits) {
          call.output = from_payload(outcome.output);
        }
        if (outcome.kind == Outcome::Kind::Failed || waits) {
          call.error = from_payload(outcome.failure.error);
          call.message = outcome.failure.message;
        }
        observer_->get().attr("agent_ended")(call_.get());
      } catch (py::error_already_set& error) {
        // An observer's bug must not change the run: report it and go on.
        error.discard_as_unraisable("counterpoint run observer (agent_ended)");
      }
    }
    original_.resolve(std::move(outcome));
  }

 private:
  std::shared_ptr<const PyRef> observer_;
  PyRef call_;
  Completion original_;
};

}  // namespace

bool observe_call(Invocation& invocation, py::handle input) {
  const auto* run = static_cast<const RunContext*>(invocation.run_context.get());
  if (run == nullptr || !run->observer) return false;
  auto call = std::make_shared<ObservedCall>();
  call->path = invocation.completion.agent_path();
  if (invocation.completion.durable()) call->checkpoint_path = invocation.completion.checkpoint_path();
  call->attempt = invocation.attempt;
  call->input = py::reinterpret_borrow<py::object>(input);
  PyObject* context = PyContext_Copy(run->caller_context.get().ptr());
  if (context == nullptr) {
    py::error_already_set error;
    error.discard_as_unraisable("counterpoint run observer (copying the run's context)");
    return true;  // unobserved, in the run's own context
  }
  call->context = py::reinterpret_steal<py::object>(context);
  call->channel = invocation.completion.channel();
  py::object call_object = py::cast(call);
  try {
    run->observer->get().attr("agent_started")(call_object);
  } catch (py::error_already_set& error) {
    error.discard_as_unraisable("counterpoint run observer (agent_started)");
    return true;  // unobserved, in the run's own context
  }
  if (run->observer_sees_ends) {
    auto resolver = std::make_shared<ObservedOutcome>(run->observer, call_object);
    Completion original = std::move(invocation.completion);
    invocation.completion = original.redirect(resolver);
    resolver->hold(std::move(original));
  }
  invocation.run_context = std::make_shared<RunContext>(run->dispatcher, call->context, nullptr);
  return true;
}

void register_observer(py::module_& m) {
  py::class_<EventChannel>(m, "EventChannel",
                           "Publishes an agent's own events into its run's event stream.")
      .def(
          "publish",
          [](const EventChannel& channel, EventKind kind, py::object data, std::string message) {
            if (kind != EventKind::Custom && kind != EventKind::Message) {
              throw py::value_error("an agent publishes only 'custom' and 'message' events");
            }
            // With the GIL: the run's lock is never held by a thread waiting for the GIL.
            return channel.publish(kind, to_payload(std::move(data)), std::move(message));
          },
          py::arg("kind"), py::arg("data"), py::arg("message") = "");
  py::class_<ObservedCall, std::shared_ptr<ObservedCall>>(
      m, "ObservedCall", "One agent call, as its run's observer sees it.")
      .def_readonly("path", &ObservedCall::path)
      .def_readonly("checkpoint_path", &ObservedCall::checkpoint_path)
      .def_readonly("attempt", &ObservedCall::attempt)
      .def_readonly("input", &ObservedCall::input)
      .def_readonly("context", &ObservedCall::context)
      .def_readonly("channel", &ObservedCall::channel)
      .def_readwrite("state", &ObservedCall::state)
      .def_readonly("status", &ObservedCall::status)
      .def_readonly("output", &ObservedCall::output)
      .def_readonly("error", &ObservedCall::error)
      .def_readonly("message", &ObservedCall::message);
}

}  // namespace counterpoint::bindings
