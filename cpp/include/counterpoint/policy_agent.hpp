#pragma once
// Per-agent policies, applied natively around any agent (sync, async, a child graph):
// retry with backoff and jitter, a timeout per attempt, a circuit breaker, concurrency
// and rate limits, and a fallback agent. Nothing here blocks a thread: backoffs and
// timeouts are timers, waits for a limit are queued continuations.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "counterpoint/agent.hpp"
#include "counterpoint/circuit_breaker.hpp"
#include "counterpoint/limiter.hpp"

namespace counterpoint {

struct RetryPolicy {
  std::uint32_t max_attempts = 1;
  double initial_backoff = 0.0;  // seconds before the second attempt
  double multiplier = 2.0;       // each further backoff is this much longer
  double max_backoff = 60.0;     // no delay exceeds this, jitter included
  double jitter = 0.0;           // each delay varies by up to +-jitter (a fraction)
  // Which failures are worth another attempt; empty: all of them.
  std::function<bool(const Failure&)> retry_on;

  // Seconds to wait after attempt `attempt` (1-based) failed; `unit_random` in [0, 1).
  double delay(std::uint32_t attempt, double unit_random) const noexcept;
};

struct AgentPolicy {
  RetryPolicy retry;
  double timeout = 0.0;  // seconds per attempt; 0 = none
  std::shared_ptr<CircuitBreaker> breaker;
  std::vector<std::shared_ptr<Limiter>> limits;
  std::shared_ptr<Agent> fallback;  // runs with the same input after the final failure
};

class PolicyAgent final : public Agent, public std::enable_shared_from_this<PolicyAgent> {
 public:
  PolicyAgent(std::shared_ptr<Agent> inner, AgentPolicy policy);
  void invoke(Invocation invocation) override;
  const AgentPolicy& policy() const noexcept { return policy_; }

 private:
  std::shared_ptr<Agent> inner_;
  AgentPolicy policy_;
};

}  // namespace counterpoint
