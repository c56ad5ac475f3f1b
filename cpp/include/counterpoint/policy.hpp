#pragma once
// Per-agent policies as data: a NodeSpec carries one and compile() applies it natively
// (see PolicyAgent), so no embedder-side wrapper is needed to decide retries.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "counterpoint/agent.hpp"

namespace counterpoint {

class CircuitBreaker;
class Limiter;

// Whether a timed-out attempt is tried again.
enum class RetryTimeouts : std::uint8_t {
  Never,         // a timeout ends the retries
  Always,        // a timeout is always worth another attempt
  AskPredicate,  // retry_on decides, as for errors (retried when there is none)
};

struct RetryPolicy {
  std::uint32_t max_attempts = 1;
  double initial_backoff = 0.0;  // seconds before the second attempt
  double multiplier = 2.0;       // each further backoff is this much longer
  double max_backoff = 60.0;     // no delay exceeds this, jitter included
  double jitter = 0.0;           // each delay varies by up to +-jitter (a fraction)
  RetryTimeouts timeouts = RetryTimeouts::AskPredicate;
  // Which agent errors are worth another attempt; empty: all of them. Consulted only for
  // FailureKind::Error (and Timeout under AskPredicate): an open circuit, a spent budget
  // and a reviewer's rejection are never retried, as another attempt cannot change them.
  // May be called on any thread; it must not block.
  std::function<bool(const Failure&)> retry_on;

  // Seconds to wait after attempt `attempt` (1-based) failed; `unit_random` in [0, 1).
  double delay(std::uint32_t attempt, double unit_random) const noexcept;
  // Whether `failure` is worth another attempt (attempts left aside).
  bool should_retry(const Failure& failure) const;
};

struct AgentPolicy {
  RetryPolicy retry;
  double timeout = 0.0;  // seconds per attempt; 0 = none
  std::shared_ptr<CircuitBreaker> breaker;
  std::vector<std::shared_ptr<Limiter>> limits;
  std::shared_ptr<Agent> fallback;  // runs with the same input after the final failure
};

}  // namespace counterpoint
