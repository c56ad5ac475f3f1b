#include "counterpoint/policy_agent.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>

#include "detail/runtime_impl.hpp"
#include "detail/tsan.hpp"
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
  Runtime::instance().impl().arena().enqueue(detail::tsan::Handoff([work = std::move(work)] {
    const Runtime::EngineWork engine_work;
    work();
  }));
}

std::string seconds_text(double seconds) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", seconds);
  return text;
}

// One invocation of a policy-wrapped agent, across all of its attempts.
//
// Limit slots belong to an attempt and are released when that attempt really ends: a
// sync attempt abandoned by its timeout still runs, so it keeps counting against
// max_concurrent until it returns.
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

  void start() {
    if (!policy_.limits.empty() || policy_.retry.max_attempts > 1) {
      // A call waiting for a limit or a backoff when its run ends stops waiting at once.
      // Registered here, before anything else can touch `outer_` from another thread.
      outer_.when_run_ends([weak = weak_from_this()] {
        if (auto self = weak.lock()) self->on_run_end();
      });
    }
    next_attempt();
  }

  void on_outcome(std::uint32_t attempt, std::size_t held, Outcome outcome) {
    bool late;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      late = attempt != attempt_ || settled_;  // a timed-out attempt's result
      if (!late) settled_ = true;
    }
    if (late) {
      // Unlocked: the grant of a freed slot may be this call's own next attempt, whose
      // grant callback takes this lock.
      release_limits(held);
      return;
    }
    cancel_timer();
    // The verdict goes to the breaker before the slots are freed: the call the freed slot
    // starts must find the breaker already open.
    if (policy_.breaker) {
      if (outcome.kind == Outcome::Kind::Failed) {
        policy_.breaker->record_failure();
      } else if (outcome.kind == Outcome::Kind::Cancelled ||
                 outcome.kind == Outcome::Kind::NeedsInput) {
        // A question for a person says nothing of the service's health.
        policy_.breaker->record_abandoned();
      } else {
        policy_.breaker->record_success();
      }
    }
    release_limits(held);
    if (outcome.kind == Outcome::Kind::Failed) {
      after_failure(std::move(outcome.failure));
      return;
    }
    outer_.resolve(std::move(outcome));
  }

 private:
  class Attempt final : public Resolver {
   public:
    Attempt(std::shared_ptr<PolicyCall> call, std::uint32_t attempt, std::size_t held)
        : call_(std::move(call)), attempt_(attempt), held_(held) {}
    void resolve(Outcome outcome) override {
      call_->on_outcome(attempt_, held_, std::move(outcome));
    }

   private:
    std::shared_ptr<PolicyCall> call_;
    std::uint32_t attempt_;
    std::size_t held_;  // limit slots this attempt holds
  };

  void next_attempt() {
    if (outer_.run_ended()) {
      outer_.cancelled();
      return;
    }
    if (attempt_ > 0 && outer_.budget_exhausted()) {
      Failure failure = last_failure_;
      failure.message += "; the run's budget is spent, so no further attempt";
      finish(std::move(failure));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      admitted_ = false;
    }
    // The breaker decides when the call can start, i.e. once every limit slot is granted:
    // a breaker that opened while the call queued must still refuse it (issue 7, defect
    // 6), and a half-open probe must not be held by a call that is still queueing. An
    // open breaker refuses at once rather than after the queue.
    if (policy_.breaker && !policy_.limits.empty() &&
        policy_.breaker->snapshot().state == CircuitBreaker::State::Open && !admit()) {
      finish(circuit_open());
      return;
    }
    acquire_limit(0);
  }

  // Asks the breaker, once per attempt. True if the call may start.
  bool admit() {
    if (!policy_.breaker) return true;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (admitted_) return true;  // it just turned half-open: this call is the probe
    }
    if (!policy_.breaker->allow()) return false;
    std::lock_guard<std::mutex> lock(mutex_);
    admitted_ = true;
    return true;
  }

  // Whether this attempt was let through by the breaker (and may hold its probe slot).
  bool admitted() {
    std::lock_guard<std::mutex> lock(mutex_);
    return admitted_;
  }

  Failure circuit_open() const {
    return Failure{"circuit breaker '" + policy_.breaker->name() + "' is open; failing fast",
                   {},
                   FailureKind::CircuitOpen};
  }

  void acquire_limit(std::size_t index) {
    if (index == policy_.limits.size()) {
      if (!admit()) {
        release_limits(index);
        finish(circuit_open());
        return;
      }
      launch(index);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_index_ = index;
      waiting_ticket_ = kAcquiring;
    }
    // The queued grant keeps the call alive while it waits (withdraw() drops it). The
    // grant may run right here, inside acquire(), so no lock is held across it.
    const std::uint64_t ticket =
        policy_.limits[index]->acquire([self = shared_from_this(), index] {
          {
            std::lock_guard<std::mutex> guard(self->mutex_);
            self->waiting_ticket_ = kNotWaiting;
          }
          on_arena([self, index] { self->acquire_limit(index + 1); });
        });
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_ticket_ == kAcquiring) {  // not granted yet: the call queues
      waiting_ticket_ = ticket;
      // Under the lock the grant takes first, so the timeline has the wait before the
      // attempt the grant starts.
      outer_.mark(EventKind::Queued, policy_.limits[index]->name());
    }
  }

  // The run ended. A call waiting for a backoff resolves at once instead of holding its
  // flow graph (and Runtime::shutdown's drain) until the timer fires.
  void on_run_end() {
    TimerQueue::Id timer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      run_over_ = true;
      timer = backoff_timer_;
      backoff_timer_ = 0;
    }
    if (timer != 0 && TimerQueue::instance().cancel(timer)) {
      on_arena([self = shared_from_this()] { self->next_attempt(); });
    }
    if (!policy_.limits.empty()) withdraw();
  }

  // Gives up a place in a limit's queue, if the call still waits in one.
  void withdraw() {
    std::size_t index;
    std::uint64_t ticket;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      index = waiting_index_;
      ticket = waiting_ticket_;
      if (ticket != kAcquiring) waiting_ticket_ = kNotWaiting;
    }
    if (ticket == kNotWaiting || ticket == kAcquiring) return;  // a grant will see the run ended
    if (!policy_.limits[index]->withdraw(ticket)) return;
    release_limits(index);
    // Frees the half-open probe slot, but only if this call holds it.
    if (policy_.breaker && admitted()) policy_.breaker->record_abandoned();
    outer_.cancelled();
  }

  void launch(std::size_t held) {
    if (outer_.run_ended()) {
      release_limits(held);
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
    outer_.mark(EventKind::Attempt, {}, attempt);
    invocation.attempt = attempt;
    invocation.agent_name = name_;
    invocation.run_id = run_id_;
    invocation.priority = priority_;
    invocation.inputs = inputs_;
    invocation.run_context = context_;
    invocation.completion =
        outer_.redirect(std::make_shared<Attempt>(shared_from_this(), attempt, held));
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
    // Async attempts are cancelled, child runs too; sync ones are abandoned and keep their
    // limit slots until they return.
    if (token) token->cancel();
    if (policy_.breaker) policy_.breaker->record_failure();
    // Off the timer thread: what follows may start a fallback agent.
    on_arena([self = shared_from_this()] {
      self->after_failure(Failure{"timed out after " + seconds_text(self->policy_.timeout) + " s",
                                  {},
                                  FailureKind::Timeout});
    });
  }

  void cancel_timer() {
    TimerQueue::Id timer;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      timer = timer_;
      timer_ = 0;
    }
    if (timer != 0) TimerQueue::instance().cancel(timer);
  }

  void release_limits(std::size_t held) {
    for (std::size_t i = 0; i < held; ++i) policy_.limits[i]->release();
  }

  void after_failure(Failure failure) {
    const RetryPolicy& retry = policy_.retry;
    last_failure_ = failure;
    // Decided natively; the embedder's predicate is asked only about agent errors, and
    // only when another attempt is possible at all.
    if (attempt_ < retry.max_attempts && !outer_.run_ended() && retry.should_retry(failure)) {
      const double wait = retry.delay(attempt_, unit_random());
      outer_.mark(EventKind::Retry, failure.message, attempt_, wait, failure.error);
      std::lock_guard<std::mutex> lock(mutex_);
      if (run_over_) {
        on_arena([self = shared_from_this()] { self->next_attempt(); });
      } else {
        // on_run_end() cancels it: the timer callback takes no lock.
        backoff_timer_ = TimerQueue::instance().schedule_after(
            wait, [self = shared_from_this()] { on_arena([self] { self->next_attempt(); }); });
      }
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
      outer_.mark(EventKind::Fallback, failure.message, 0, 0.0, failure.error);
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
  const std::string name_;  // owned: the call outlives the dispatching thread's frame
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
  static constexpr std::uint64_t kNotWaiting = 0;
  static constexpr std::uint64_t kAcquiring = ~std::uint64_t{0};
  std::size_t waiting_index_ = 0;
  std::uint64_t waiting_ticket_ = kNotWaiting;
  bool admitted_ = false;  // the breaker let the current attempt through
  bool run_over_ = false;   // the run has ended (set by on_run_end)
  TimerQueue::Id backoff_timer_ = 0;
  Failure last_failure_;
};

}  // namespace

PolicyAgent::PolicyAgent(std::shared_ptr<Agent> inner, AgentPolicy policy)
    : inner_(std::move(inner)), policy_(std::move(policy)) {
  if (policy_.retry.max_attempts < 1) policy_.retry.max_attempts = 1;
}

void PolicyAgent::invoke(Invocation invocation) {
  auto call = std::make_shared<PolicyCall>(shared_from_this(), inner_, std::move(invocation));
  call->start();
}

}  // namespace counterpoint
