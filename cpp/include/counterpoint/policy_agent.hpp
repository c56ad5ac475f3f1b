#pragma once
// Per-agent policies, applied natively around any agent (sync, async, a child graph):
// retry with backoff and jitter, a timeout per attempt, a circuit breaker, concurrency
// and rate limits, and a fallback agent. Nothing here blocks a thread: backoffs and
// timeouts are timers, waits for a limit are queued continuations. compile() wraps the
// agent of every NodeSpec that has a policy in one; it can also be used directly.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "counterpoint/agent.hpp"
#include "counterpoint/circuit_breaker.hpp"
#include "counterpoint/limiter.hpp"
#include "counterpoint/policy.hpp"

namespace counterpoint {

class PolicyAgent final : public Agent, public std::enable_shared_from_this<PolicyAgent> {
 public:
  PolicyAgent(std::shared_ptr<Agent> inner, AgentPolicy policy);
  void invoke(Invocation invocation) override;
  // Policies only queue, time and count calls; whether a call blocks is the inner agent's.
  bool hands_off() const noexcept override { return inner_->hands_off(); }
  const AgentPolicy& policy() const noexcept { return policy_; }

 private:
  std::shared_ptr<Agent> inner_;
  AgentPolicy policy_;
};

}  // namespace counterpoint
