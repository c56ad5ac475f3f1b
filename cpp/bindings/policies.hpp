#pragma once
// Policies as data: what Python's node spec says about retries, timeouts, breakers,
// limits, fallbacks and review gates, turned into native agents around the user's agent.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/circuit_breaker.hpp"
#include "counterpoint/limiter.hpp"
#include "counterpoint/policy.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

struct RetrySpec {
  std::uint32_t max_attempts = 1;
  double initial_backoff = 0.0;
  double multiplier = 2.0;
  double max_backoff = 60.0;
  double jitter = 0.0;
  // Called with a FailureInfo for an agent's own error (and for a timeout under
  // AskPredicate); None retries every error. The engine never retries circuit-open,
  // budget and rejected failures, without asking.
  py::object retry_on = py::none();
  RetryTimeouts timeouts = RetryTimeouts::Always;
};

struct PolicySpec {
  std::optional<RetrySpec> retry;
  double timeout = 0.0;  // seconds per attempt; 0 = none
  std::shared_ptr<CircuitBreaker> breaker;
  std::vector<std::shared_ptr<Limiter>> limits;
  std::shared_ptr<Agent> fallback;
};

// A confidence gate: outputs whose confidence is below `below` (or not reported) go to
// `reviewer` (called on a pool thread with a PendingReview, returns a ReviewVerdict), or,
// without one, pause the run for a human.
struct ReviewSpec {
  double below = 0.7;
  py::object reviewer = py::none();
  // What a pause records for the person who decides (the gate's threshold and
  // approvers): the paused outcome carries it as its failure's `error`, so a gate at any
  // depth, even one a pattern builds while running, is known when the decision comes.
  py::object pause_details = py::none();
};

struct ReviewVerdict {
  bool approved = false;
  py::object output;   // approved: what the run gets
  std::string reason;  // rejected: why
};

// The engine's policy for a node spec: the engine wraps the agent in it at compile().
AgentPolicy agent_policy(const PolicySpec& spec);
// Wraps `agent` in a review gate (NodeSpec::wrap: outside the policy, so the gate sees
// the output the policy finally produced, fallback included).
std::shared_ptr<Agent> review_gate(std::shared_ptr<Agent> agent, const ReviewSpec& review);

}  // namespace counterpoint::bindings
