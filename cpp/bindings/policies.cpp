// Native policies exposed to Python: circuit breakers, limits, and the policy data of a
// node spec turned into native agents (retries, timeouts, fallbacks, review gates).
#include "policies.hpp"

#include <pybind11/native_enum.h>
#include <pybind11/stl.h>

#include "counterpoint/policy_agent.hpp"
#include "counterpoint/runtime.hpp"
#include "gil.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "records.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

// counterpoint.confidence_of, registered by the Python package at import.
py::handle g_confidence_of;

// The user's retry_on predicate, asked only about what the engine cannot decide itself
// (an agent's own error, or a timeout under RetryTimeouts::AskPredicate).
std::function<bool(const Failure&)> python_predicate(const py::object& retry_on) {
  if (retry_on.is_none()) return {};
  auto predicate = std::make_shared<PyRef>(retry_on);
  return [predicate](const Failure& failure) {
    if (!python_alive()) return false;
    ScopedGil gil;
    try {
      py::object argument = py::cast(failure_info(failure));
      PyObject* raw = call_python(predicate->get().ptr(), argument.ptr());
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
  ReviewGate(double below, std::shared_ptr<PyRef> reviewer, Payload pause_details)
      : below_(below), reviewer_(std::move(reviewer)), pause_details_(std::move(pause_details)) {}

  // Takes the agent's real completion and returns the one the agent should report to.
  Completion intercept(Completion outer) {
    Completion inner = outer.redirect(shared_from_this());
    outer_ = std::move(outer);
    return inner;
  }

  void resolve(Outcome outcome) override {
    if (outcome.kind != Outcome::Kind::Succeeded) {
      outer_.resolve(std::move(outcome));
      return;
    }
    if (!python_alive()) {
      // Fail closed: an output nobody could check never passes as reviewed; it waits
      // for a human like any other (a durable run keeps it for resume).
      outcome.kind = Outcome::Kind::NeedsReview;
      outcome.failure.message = "the interpreter was exiting, so the output could not be checked";
      outcome.confidence = -1.0;
      outer_.resolve(std::move(outcome));
      return;
    }
    std::optional<double> confidence;
    {
      ScopedGil gil;
      try {
        PyObject* raw = call_python(g_confidence_of.ptr(), from_payload(outcome.output).ptr());
        if (raw == nullptr) throw py::error_already_set();
        confidence = py::reinterpret_steal<py::object>(raw).cast<std::optional<double>>();
      } catch (py::error_already_set& error) {
        outer_.resolve(Outcome::failed(failure_from(error)));
        return;
      }
    }
    if (confidence && *confidence >= below_) {
      outer_.resolve(std::move(outcome));
      return;
    }
    if (confidence) {
      char reason[96];
      std::snprintf(reason, sizeof(reason), "confidence %g < %g", *confidence, below_);
      outcome.failure.message = reason;
      outcome.confidence = *confidence;
    } else {
      outcome.failure.message = "no confidence reported";
      outcome.confidence = -1.0;
    }
    if (!reviewer_) {
      if (!outer_.durable()) {
        // Nobody could ever give the decision: a paused run needs a store to resume from.
        outer_.resolve(Outcome::failed(Failure{
            "its review gate pauses the run for a person (" + outcome.failure.message +
                "), which needs a store to resume from; compile the outermost graph with "
                "store='runs.db', or give the Review a reviewer",
            {}}));
        return;
      }
      outcome.kind = Outcome::Kind::NeedsReview;
      outcome.failure.error = pause_details_;
      outer_.resolve(std::move(outcome));
      return;
    }
    // A reviewer may take its time (a person at a prompt): never on an engine thread.
    outer_.mark(EventKind::Reviewing, outcome.failure.message);
    pending_ = std::move(outcome);
    Runtime::instance().pool().submit([self = shared_from_this()] { self->ask_reviewer(); });
  }

 private:
  void ask_reviewer() {
    if (outer_.run_ended() || !python_alive()) {
      outer_.cancelled();  // fail closed: unasked is not approved
      return;
    }
    Outcome decided;
    {
      ScopedGil gil;
      try {
        py::object request = py::cast(PendingReview{
            std::string(outer_.agent_name()), from_payload(pending_.output),
            pending_.failure.message,
            pending_.confidence < 0 ? std::nullopt : std::optional<double>(pending_.confidence)});
        PyObject* raw = call_python(reviewer_->get().ptr(), request.ptr());
        if (raw == nullptr) throw py::error_already_set();
        const py::object returned = py::reinterpret_steal<py::object>(raw);
        const auto& verdict = returned.cast<const ReviewVerdict&>();
        if (verdict.approved) {
          decided = Outcome::success(to_payload(verdict.output));
          decided.usage = pending_.usage;
        } else {
          decided = Outcome::failed(Failure{verdict.reason, {}, FailureKind::Rejected});
        }
      } catch (py::error_already_set& error) {
        decided = Outcome::failed(failure_from(error));
      } catch (const py::cast_error&) {
        decided = Outcome::failed(Failure{
            "the reviewer wrapper returned something other than a ReviewVerdict; this is a "
            "counterpoint bug", {}});
      }
      pending_ = Outcome{};
      drain_released_objects();
    }
    outer_.resolve(std::move(decided));
  }

  const double below_;
  std::shared_ptr<PyRef> reviewer_;
  const Payload pause_details_;
  Completion outer_;
  Outcome pending_;
};

class ReviewAgent final : public Agent {
 public:
  ReviewAgent(std::shared_ptr<Agent> inner, const ReviewSpec& spec)
      : inner_(std::move(inner)),
        below_(spec.below),
        reviewer_(spec.reviewer.is_none() ? nullptr : std::make_shared<PyRef>(spec.reviewer)),
        pause_details_(spec.pause_details.is_none() ? Payload() : to_payload(spec.pause_details)) {}

  void invoke(Invocation invocation) override {
    auto gate = std::make_shared<ReviewGate>(below_, reviewer_, pause_details_);
    invocation.completion = gate->intercept(std::move(invocation.completion));
    inner_->invoke(std::move(invocation));
  }
  bool hands_off() const noexcept override { return inner_->hands_off(); }

 private:
  std::shared_ptr<Agent> inner_;
  const double below_;
  std::shared_ptr<PyRef> reviewer_;
  const Payload pause_details_;
};

}  // namespace

AgentPolicy agent_policy(const PolicySpec& spec) {
  AgentPolicy policy;
  if (spec.retry) {
    const RetrySpec& retry = *spec.retry;
    policy.retry.max_attempts = retry.max_attempts;
    policy.retry.initial_backoff = retry.initial_backoff;
    policy.retry.multiplier = retry.multiplier;
    policy.retry.max_backoff = retry.max_backoff;
    policy.retry.jitter = retry.jitter;
    policy.retry.timeouts = retry.timeouts;
    policy.retry.retry_on = python_predicate(retry.retry_on);
  }
  policy.timeout = spec.timeout;
  policy.breaker = spec.breaker;
  policy.limits = spec.limits;
  policy.fallback = spec.fallback;
  return policy;
}

std::shared_ptr<Agent> review_gate(std::shared_ptr<Agent> agent, const ReviewSpec& review) {
  return std::make_shared<ReviewAgent>(std::move(agent), review);
}

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

  py::native_enum<RetryTimeouts>(m, "RetryTimeouts", "enum.Enum",
                                 "Whether a timed-out attempt is retried.")
      .value("never", RetryTimeouts::Never)
      .value("always", RetryTimeouts::Always)
      .value("ask_predicate", RetryTimeouts::AskPredicate)
      .finalize();
  py::class_<RetrySpec>(m, "RetrySpec", "Retry with exponential backoff and jitter.")
      .def(py::init([](std::uint32_t max_attempts, double initial_backoff, double multiplier,
                       double max_backoff, double jitter, py::object retry_on,
                       RetryTimeouts timeouts) {
             return RetrySpec{max_attempts, initial_backoff, multiplier, max_backoff, jitter,
                              std::move(retry_on), timeouts};
           }),
           py::kw_only(), py::arg("max_attempts"), py::arg("initial_backoff"),
           py::arg("multiplier"), py::arg("max_backoff"), py::arg("jitter"),
           py::arg("retry_on") = py::none(), py::arg("timeouts") = RetryTimeouts::Always)
      .def_readonly("max_attempts", &RetrySpec::max_attempts)
      .def_readonly("timeouts", &RetrySpec::timeouts);
  py::class_<PolicySpec>(m, "PolicySpec", "The policies of one agent, as data.")
      .def(py::init([](std::optional<RetrySpec> retry, double timeout,
                       std::shared_ptr<CircuitBreaker> breaker,
                       std::vector<std::shared_ptr<Limiter>> limits,
                       std::shared_ptr<Agent> fallback) {
             return PolicySpec{std::move(retry), timeout, std::move(breaker), std::move(limits),
                               std::move(fallback)};
           }),
           py::kw_only(), py::arg("retry") = py::none(), py::arg("timeout") = 0.0,
           py::arg("breaker") = nullptr, py::arg("limits") = std::vector<std::shared_ptr<Limiter>>{},
           py::arg("fallback") = nullptr)
      .def_readonly("timeout", &PolicySpec::timeout);
  py::class_<ReviewSpec>(m, "ReviewSpec", "A confidence gate.")
      .def(py::init([](double below, py::object reviewer, py::object pause_details) {
             return ReviewSpec{below, std::move(reviewer), std::move(pause_details)};
           }),
           py::kw_only(), py::arg("below"), py::arg("reviewer") = py::none(),
           py::arg("pause_details") = py::none())
      .def_readonly("below", &ReviewSpec::below);
  py::class_<ReviewVerdict>(m, "ReviewVerdict", "A reviewer's decision on one output.")
      .def(py::init([](bool approved, py::object output, std::string reason) {
             return ReviewVerdict{approved, std::move(output), std::move(reason)};
           }),
           py::kw_only(), py::arg("approved"), py::arg("output") = py::none(),
           py::arg("reason") = "")
      .def_readonly("approved", &ReviewVerdict::approved)
      .def_readonly("output", &ReviewVerdict::output)
      .def_readonly("reason", &ReviewVerdict::reason);
  m.def("set_confidence_reader", [](py::object reader) { g_confidence_of = reader.release(); },
        "Tells review gates how to read an output's confidence (counterpoint.confidence_of).");
}

}  // namespace counterpoint::bindings
