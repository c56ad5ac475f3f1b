#include "counterpoint/policy_agent.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "counterpoint/detail/runtime_impl.hpp"
#include "counterpoint/detail/tsan.hpp"
#include "counterpoint/timer_queue.hpp"

namespace counterpoint {

double RetryPolicy::delay(std::uint32_t attempt, double unit_random) const noexcept {
  double base = initial_backoff * std::pow(multiplier, static_cast<double>(attempt - 1));
  if (!std::isfinite(base)) base = max_backoff;
  const double jittered = base * (1.0 + jitter * (2.0 * unit_random - 1.0));
  return std::clamp(jittered, 0.0, max_backoff);
}

namespace {

double unit_random() {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(generator);
}

// Work that follows a timer or a limiter grant runs on the oneTBB arena, not on the
// timer thread or on whichever thread released the limit.
void on_arena(std::function<void()> work) {
  Runtime::instance().impl().arena().enqueue(detail::tsan::Handoff(std::move(work)));
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", seconds);
  return text;
}

// One invocation of a policy-wrapped agent, across all of its attempts.
class PolicyCall final : public std::enable_shared_from_this<PolicyCall> {
 public:
  PolicyCall(std::shared_ptr<const PolicyAgent> owner, std::shared_ptr<Agent> inner,
             Invocation invocation)
      : owner_(std::move(owner)),
        inner_(std::move(inner)),
        policy_(owner_->policy()),
        name_(invocation.agent_name),
        run_id_(invocation.run_id),
        priority_(invocation.priority),
        inputs_(std::move(invocation.inputs)),
        context_(std::move(invocation.run_context)),
        outer_(std::move(invocation.completion)) {}

  void next_attempt() {
    if (outer_.run_ended()) {
      outer_.cancelled();
      return;
    }
    if (attempt_ > 0 && outer_.budget_exhausted()) {
      finish(Failure{"the run's budget is spent; no further attempt", {}, last_kind_});
      return;
    }
    if (policy_.breaker && !policy_.breaker->allow()) {
      finish(Failure{"circuit breaker '" + policy_.breaker->name() + "' is open; failing fast",
                     {},
                     FailureKind::CircuitOpen});
      return;
    }
    acquire_limit(0);
  }

  void on_outcome(std::uint32_t attempt, Outcome outcome) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (attempt != attempt_ || settled_) return;  // a timed-out attempt's late result
      settled_ = true;
    }
    end_attempt();
    if (outcome.kind == Outcome::Kind::Failed) {
      if (policy_.breaker) policy_.breaker->record_failure();
      after_failure(std::move(outcome.failure));
      return;
    }
    if (policy_.breaker) {
      if (outcome.kind == Outcome::Kind::Cancelled) {
        policy_.breaker->record_abandoned();
      } else {
        policy_.breaker->record_success();
      }
    }
    outer_.resolve(std::move(outcome));
  }

 private:
  class Attempt final : public Resolver {
   public:
    Attempt(std::shared_ptr<PolicyCall> call, std::uint32_t attempt)
        : call_(std::move(call)), attempt_(attempt) {}
    void resolve(Outcome outcome) override { call_->on_outcome(attempt_, std::move(outcome)); }

   private:
    std::shared_ptr<PolicyCall> call_;
    std::uint32_t attempt_;
  };

  void acquire_limit(std::size_t index) {
    if (index == policy_.limits.size()) {
      launch();
      return;
    }
    policy_.limits[index]->acquire([self = shared_from_this(), index] {
      self->limits_held_ = index + 1;
      on_arena([self, index] { self->acquire_limit(index + 1); });
    });
  }

  void launch() {
    if (outer_.run_ended()) {
      release_limits();
      if (policy_.breaker) policy_.breaker->record_abandoned();
      outer_.cancelled();
      return;
    }
    Invocation invocation;
    std::uint32_t attempt;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      attempt = ++attempt_;
      settled_ = false;
      token_ = std::make_shared<CancelToken>();
      invocation.cancellation = token_;
    }
    invocation.agent_name = name_;
    invocation.run_id = run_id_;
    invocation.priority = priority_;
    invocation.inputs = inputs_;
    invocation.run_context = context_;
    invocation.completion = outer_.redirect(std::make_shared<Attempt>(shared_from_this(), attempt));
    if (policy_.timeout > 0) {
      std::weak_ptr<PolicyCall> weak = shared_from_this();
      const TimerQueue::Id timer =
          TimerQueue::instance().schedule_after(policy_.timeout, [weak, attempt] {
            if (auto self = weak.lock()) self->on_timeout(attempt);
          });
      std::lock_guard<std::mutex> lock(mutex_);
      timer_ = timer;
    }
    try {
      inner_->invoke(std::move(invocation));
    } catch (...) {
      // The attempt's Completion failed the attempt while unwinding.
    }
  }

  void on_timeout(std::uint32_t attempt) {
    std::shared_ptr<CancelToken> token;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (attempt != attempt_ || settled_) return;
      settled_ = true;
      timer_ = 0;
      token = token_;
    }
    release_limits();
    if (token) token->cancel();  // async attempts are cancelled; sync ones are abandoned
    if (policy_.breaker) policy_.breaker->record_failure();
    after_failure(Failure{"timed out after " + seconds_text(policy_.timeout) + " s", {},
                          FailureKind::Timeout});
  }

  void end_attempt() {
    TimerQueue::Id timer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      timer = timer_;
      timer_ = 0;
    }
    if (timer != 0) TimerQueue::instance().cancel(timer);
    release_limits();
  }

  void release_limits() {
    const std::size_t held = limits_held_.exchange(0);
    for (std::size_t i = 0; i < held; ++i) policy_.limits[i]->release();
  }

  void after_failure(Failure failure) {
    last_kind_ = failure.kind;
    const RetryPolicy& retry = policy_.retry;
    const bool retryable = !retry.retry_on || retry.retry_on(failure);
    if (attempt_ < retry.max_attempts && retryable && !outer_.run_ended()) {
      const double wait = retry.delay(attempt_, unit_random());
      TimerQueue::instance().schedule_after(wait, [self = shared_from_this()] {
        on_arena([self] { self->next_attempt(); });
      });
      return;
    }
    finish(std::move(failure));
  }

  void finish(Failure failure) {
    if (outer_.run_ended()) {
      outer_.cancelled();
      return;
    }
    // A spent budget stops new invocations, the fallback's included.
    if (policy_.fallback && !outer_.budget_exhausted()) {
      Invocation invocation;
      invocation.agent_name = name_;
      invocation.run_id = run_id_;
      invocation.priority = priority_;
      invocation.inputs = std::move(inputs_);
      invocation.run_context = context_;
      invocation.completion = std::move(outer_);
      try {
        policy_.fallback->invoke(std::move(invocation));
      } catch (...) {
        // The fallback's Completion failed the agent while unwinding.
      }
      return;
    }
    if (attempt_ > 1) {
      failure.message = "after " + std::to_string(attempt_) + " attempts: " + failure.message;
    }
    outer_.fail(std::move(failure));
  }

  const std::shared_ptr<const PolicyAgent> owner_;  // keeps `policy_` alive
  const std::shared_ptr<Agent> inner_;
  const AgentPolicy& policy_;
  const std::string_view name_;
  const std::uint64_t run_id_;
  const int priority_;
  Inputs inputs_;
  const std::shared_ptr<void> context_;
  Completion outer_;

  std::mutex mutex_;
  std::uint32_t attempt_ = 0;
  bool settled_ = true;
  TimerQueue::Id timer_ = 0;
  std::shared_ptr<CancelToken> token_;
  std::atomic<std::size_t> limits_held_{0};
  FailureKind last_kind_ = FailureKind::Error;
};

}  // namespace

PolicyAgent::PolicyAgent(std::shared_ptr<Agent> inner, AgentPolicy policy)
    : inner_(std::move(inner)), policy_(std::move(policy)) {
  if (policy_.retry.max_attempts < 1) policy_.retry.max_attempts = 1;
}

void PolicyAgent::invoke(Invocation invocation) {
  auto call = std::make_shared<PolicyCall>(shared_from_this(), inner_, std::move(invocation));
  call->next_attempt();
}

}  // namespace counterpoint
