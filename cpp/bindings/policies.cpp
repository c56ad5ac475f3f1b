// Native policies exposed to Python: circuit breakers, limits, the policy wrapper agent
// and the human-review gate.
#include <pybind11/stl.h>

#include "counterpoint/policy_agent.hpp"
#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

std::function<bool(const Failure&)> python_predicate(py::object predicate) {
  if (predicate.is_none()) return {};
  auto callable = std::make_shared<PyCallable>(std::move(predicate));
  return [callable](const Failure& failure) {
    if (!python_alive()) return false;
    ScopedGil gil;
    try {
      py::tuple argument = py::make_tuple(to_string(failure.kind), from_payload(failure.error));
      PyObject* raw = call_python(callable->get().ptr(), argument.ptr());
      if (raw == nullptr) throw py::error_already_set();
      return py::reinterpret_steal<py::object>(raw).cast<bool>();
    } catch (py::error_already_set&) {
      return false;  // a broken predicate must not turn into endless retries
    }
  };
}

// Holds an agent's successful output until a confidence check (and, if needed, a
// reviewer) has decided what the run gets: the output, an edited output, a rejection,
// or a pause for human review.
class ReviewGate final : public Resolver, public std::enable_shared_from_this<ReviewGate> {
 public:
  ReviewGate(std::shared_ptr<PyCallable> check, std::shared_ptr<PyCallable> reviewer)
      : check_(std::move(check)), reviewer_(std::move(reviewer)) {}

  // Takes the agent's real completion and returns the one the agent should report to.
  Completion intercept(Completion outer) {
    Completion inner = outer.redirect(shared_from_this());
    outer_ = std::move(outer);
    return inner;
  }

  void resolve(Outcome outcome) override {
    if (outcome.kind != Outcome::Kind::Succeeded || !python_alive()) {
      outer_.resolve(std::move(outcome));
      return;
    }
    bool needs_review = false;
    {
      ScopedGil gil;
      try {
        PyObject* raw = call_python(check_->get().ptr(), from_payload(outcome.output).ptr());
        if (raw == nullptr) throw py::error_already_set();
        py::object verdict = py::reinterpret_steal<py::object>(raw);
        if (!verdict.is_none()) {
          auto pair = verdict.cast<py::tuple>();
          outcome.failure.message = pair[0].cast<std::string>();
          outcome.confidence = pair[1].is_none() ? -1.0 : pair[1].cast<double>();
          needs_review = true;
        }
      } catch (py::error_already_set& error) {
        outcome = Outcome::failed(failure_from(error));
      }
    }
    if (!needs_review) {
      outer_.resolve(std::move(outcome));
      return;
    }
    if (!reviewer_) {
      outcome.kind = Outcome::Kind::NeedsReview;
      outer_.resolve(std::move(outcome));
      return;
    }
    // A reviewer may take its time (a person at a prompt): never on an engine thread.
    pending_ = std::move(outcome);
    Runtime::instance().pool().submit([self = shared_from_this()] { self->ask_reviewer(); });
  }

 private:
  void ask_reviewer() {
    if (outer_.run_ended() || !python_alive()) {
      outer_.cancelled();
      return;
    }
    Outcome decided;
    {
      ScopedGil gil;
      try {
        py::tuple request = py::make_tuple(
            py::str(std::string(outer_.agent_name())), from_payload(pending_.output),
            pending_.failure.message,
            pending_.confidence < 0 ? py::object(py::none())
                                    : py::object(py::float_(pending_.confidence)));
        PyObject* raw = call_python(reviewer_->get().ptr(), request.ptr());
        if (raw == nullptr) throw py::error_already_set();
        py::tuple decision = py::reinterpret_steal<py::tuple>(raw);
        const std::string verdict = decision[0].cast<std::string>();
        if (verdict == "approve") {
          decided = Outcome::success(to_payload(py::reinterpret_borrow<py::object>(decision[1])));
          decided.usage = pending_.usage;
        } else {
          decided = Outcome::failed(
              Failure{decision[1].cast<std::string>(), {}, FailureKind::Rejected});
        }
      } catch (py::error_already_set& error) {
        decided = Outcome::failed(failure_from(error));
      }
      pending_ = Outcome{};
      drain_released_objects();
    }
    outer_.resolve(std::move(decided));
  }

  std::shared_ptr<PyCallable> check_;
  std::shared_ptr<PyCallable> reviewer_;
  Completion outer_;
  Outcome pending_;
};

class ReviewAgent final : public Agent {
 public:
  ReviewAgent(std::shared_ptr<Agent> inner, py::object check, py::object reviewer)
      : inner_(std::move(inner)),
        check_(std::make_shared<PyCallable>(std::move(check))),
        reviewer_(reviewer.is_none() ? nullptr : std::make_shared<PyCallable>(std::move(reviewer))) {}

  void invoke(Invocation invocation) override {
    auto gate = std::make_shared<ReviewGate>(check_, reviewer_);
    invocation.completion = gate->intercept(std::move(invocation.completion));
    inner_->invoke(std::move(invocation));
  }

 private:
  std::shared_ptr<Agent> inner_;
  std::shared_ptr<PyCallable> check_;
  std::shared_ptr<PyCallable> reviewer_;
};

}  // namespace

void register_policies(py::module_& m) {
  py::class_<CircuitBreaker, std::shared_ptr<CircuitBreaker>>(m, "CircuitBreaker")
      .def(py::init([](std::string name, std::uint32_t failures, double window, double reset_after) {
             try {
               return std::make_shared<CircuitBreaker>(std::move(name), failures, window, reset_after);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("name"), py::arg("failures"), py::arg("window"), py::arg("reset_after"))
      .def_property_readonly("name", &CircuitBreaker::name)
      .def("allow", &CircuitBreaker::allow)
      .def("record_success", &CircuitBreaker::record_success)
      .def("record_failure", &CircuitBreaker::record_failure)
      .def("snapshot", [](const CircuitBreaker& breaker) {
        const auto snap = breaker.snapshot();
        py::dict out;
        out["state"] = to_string(snap.state);
        out["recent_failures"] = snap.recent_failures;
        out["total_failures"] = snap.total_failures;
        out["total_successes"] = snap.total_successes;
        out["rejected"] = snap.rejected;
        out["seconds_until_probe"] = snap.seconds_until_probe;
        return out;
      });

  py::class_<Limiter, std::shared_ptr<Limiter>>(m, "Limiter")
      .def(py::init([](std::string name, std::uint32_t max_concurrent, double per_second,
                       double burst) {
             try {
               return std::make_shared<Limiter>(std::move(name), max_concurrent, per_second, burst);
             } catch (const std::invalid_argument& e) {
               throw py::value_error(e.what());
             }
           }),
           py::arg("name"), py::arg("max_concurrent"), py::arg("per_second"), py::arg("burst"))
      .def_property_readonly("name", &Limiter::name)
      .def("snapshot", [](const Limiter& limiter) {
        const auto snap = limiter.snapshot();
        py::dict out;
        out["running"] = snap.running;
        out["waiting"] = snap.waiting;
        out["granted"] = snap.granted;
        out["max_running_seen"] = snap.max_running_seen;
        return out;
      });

  py::class_<PolicyAgent, Agent, std::shared_ptr<PolicyAgent>>(m, "PolicyAgent")
      .def(py::init([](std::shared_ptr<Agent> inner, std::uint32_t max_attempts,
                       double initial_backoff, double multiplier, double max_backoff,
                       double jitter, py::object retry_on, double timeout,
                       std::shared_ptr<CircuitBreaker> breaker,
                       std::vector<std::shared_ptr<Limiter>> limits,
                       std::shared_ptr<Agent> fallback) {
             AgentPolicy policy;
             policy.retry.max_attempts = max_attempts;
             policy.retry.initial_backoff = initial_backoff;
             policy.retry.multiplier = multiplier;
             policy.retry.max_backoff = max_backoff;
             policy.retry.jitter = jitter;
             policy.retry.retry_on = python_predicate(std::move(retry_on));
             policy.timeout = timeout;
             policy.breaker = std::move(breaker);
             policy.limits = std::move(limits);
             policy.fallback = std::move(fallback);
             return std::make_shared<PolicyAgent>(std::move(inner), std::move(policy));
           }),
           py::arg("inner"), py::arg("max_attempts"), py::arg("initial_backoff"),
           py::arg("multiplier"), py::arg("max_backoff"), py::arg("jitter"),
           py::arg("retry_on"), py::arg("timeout"), py::arg("breaker"), py::arg("limits"),
           py::arg("fallback"));

  py::class_<ReviewAgent, Agent, std::shared_ptr<ReviewAgent>>(m, "ReviewAgent")
      .def(py::init<std::shared_ptr<Agent>, py::object, py::object>(), py::arg("inner"),
           py::arg("check"), py::arg("reviewer"));
}

}  // namespace counterpoint::bindings
