// PolicyAgent: retries (count, backoff and jitter bounds, retry_on), the per-attempt
// timeout and its cancel token, the fallback, the circuit breaker, limits, and what a
// run's end does to an invocation waiting for a backoff or a limit. The last section is
// issue 7 defect 6: a breaker behind a limit queue must be asked again when the slot is
// granted.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "counterpoint/circuit_breaker.hpp"
#include "counterpoint/limiter.hpp"
#include "counterpoint/policy_agent.hpp"
#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;
using BreakerState = CircuitBreaker::State;

namespace {

// Fails on a pool thread after `delay` until `failures` calls have failed, then succeeds
// with "ok". Counts calls and remembers when each started.
class Service : public TestAgent {
 public:
  Service(int failures, milliseconds delay, std::string message = "service down")
      : failures_(failures), delay_(delay), message_(std::move(message)) {}

  void invoke(Invocation invocation) override {
    record(invocation);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      started_.push_back(std::chrono::steady_clock::now());
    }
    auto shared = std::make_shared<Invocation>(std::move(invocation));
    Runtime::instance().pool().submit([this, shared] {
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      if (attempts_.fetch_add(1) < failures_) {
        shared->completion.fail(Failure{message_, make(std::string("error"))});
      } else {
        shared->completion.succeed(make(std::string("ok")));
      }
    });
  }
  std::vector<std::chrono::steady_clock::time_point> started() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return started_;
  }

 private:
  const int failures_;
  const milliseconds delay_;
  const std::string message_;
  std::atomic<int> attempts_{0};
  mutable std::mutex mutex_;
  std::vector<std::chrono::steady_clock::time_point> started_;
};

std::shared_ptr<Service> service(int failures, milliseconds delay = milliseconds(1),
                                 std::string message = "service down") {
  return std::make_shared<Service>(failures, delay, std::move(message));
}

constexpr int kAlways = 1 << 30;

std::shared_ptr<CompiledGraph> single(const std::string& name, std::shared_ptr<Agent> agent) {
  GraphSpec spec;
  spec.add(name, std::move(agent));
  return CompiledGraph::compile(spec);
}

// A healthy service behind `breaker` and a one-slot limit that the test holds, so a call
// queues for the slot until the test releases it.
struct GuardedService {
  explicit GuardedService(std::shared_ptr<CircuitBreaker> breaker_) : breaker(std::move(breaker_)) {
    limit->acquire([] {});
    AgentPolicy policy;
    policy.breaker = breaker;
    policy.limits = {limit};
    graph = single("svc", with_policy(healthy, policy));
  }
  // Starts a call that queues for the held slot; then the breaker fails into half-open
  // and another caller takes its probe.
  RunHandle queue_while_another_probes() {
    RunHandle queued = start_input(graph);
    REQUIRE(eventually([&] { return limit->snapshot().waiting == 1; }));
    breaker->record_failure();
    REQUIRE(eventually([&] { return breaker->snapshot().state == BreakerState::HalfOpen; }));
    REQUIRE(breaker->allow());  // the other caller's probe
    return queued;
  }
  std::shared_ptr<CircuitBreaker> breaker;
  std::shared_ptr<Limiter> limit = std::make_shared<Limiter>("svc", 1, 0.0, 0.0);
  std::shared_ptr<Service> healthy = service(0);
  std::shared_ptr<CompiledGraph> graph;
};

// Fails inside invoke(), on the oneTBB worker.
std::shared_ptr<LambdaAgent> failing_inline(std::string message) {
  return lambda_agent([message](Invocation inv) { inv.completion.fail(Failure{message, {}}); });
}

}  // namespace

// ---- RetryPolicy::delay ---------------------------------------------------------------

TEST(policy_delay_grows_geometrically_and_is_capped) {
  RetryPolicy retry;
  retry.initial_backoff = 0.1;
  retry.multiplier = 2.0;
  retry.max_backoff = 1.0;
  CHECK(std::abs(retry.delay(1, 0.5) - 0.1) < 1e-12);
  CHECK(std::abs(retry.delay(2, 0.5) - 0.2) < 1e-12);
  CHECK(std::abs(retry.delay(3, 0.5) - 0.4) < 1e-12);
  CHECK(std::abs(retry.delay(4, 0.5) - 0.8) < 1e-12);
  CHECK_EQ(retry.delay(5, 0.5), 1.0);
  CHECK_EQ(retry.delay(60, 0.5), 1.0);
  CHECK_EQ(retry.delay(100000, 0.5), 1.0);  // pow overflows to inf: still the cap
  retry.multiplier = 1.0;
  CHECK(std::abs(retry.delay(7, 0.5) - 0.1) < 1e-12);  // constant backoff
  RetryPolicy none;
  CHECK_EQ(none.delay(1, 0.9), 0.0);  // no backoff configured: retry at once
  CHECK_EQ(none.delay(10, 0.1), 0.0);
}

TEST(policy_delay_jitter_stays_within_its_bounds) {
  RetryPolicy retry;
  retry.initial_backoff = 0.2;
  retry.multiplier = 3.0;
  retry.max_backoff = 5.0;
  retry.jitter = 0.25;
  for (std::uint32_t attempt = 1; attempt <= 6; ++attempt) {
    const double base = std::min(0.2 * std::pow(3.0, attempt - 1.0), 1e9);
    double lowest = 1e9;
    double highest = -1.0;
    for (int i = 0; i < 1000; ++i) {
      const double u = i / 1000.0;  // [0, 1)
      const double d = retry.delay(attempt, u);
      CHECK(d >= 0.0);
      CHECK(d <= retry.max_backoff);  // jitter included
      CHECK(d >= std::min(base * 0.75, retry.max_backoff) - 1e-9);
      CHECK(d <= base * 1.25 + 1e-9);
      lowest = std::min(lowest, d);
      highest = std::max(highest, d);
    }
    if (base * 1.25 < retry.max_backoff) {
      // The jitter really spreads the delays over the whole band.
      CHECK(std::abs(lowest - base * 0.75) < 1e-9);
      CHECK(highest > base * 1.24);
    }
  }
  // Jitter beyond 100% never makes a delay negative.
  retry.jitter = 3.0;
  for (int i = 0; i < 100; ++i) CHECK(retry.delay(1, i / 100.0) >= 0.0);
}

// ---- retries ----------------------------------------------------------------------------

TEST(policy_retries_until_success) {
  auto flaky = service(2);
  AgentPolicy policy;
  policy.retry.max_attempts = 5;
  auto graph = single("flaky", with_policy(flaky, policy));
  RunHandle run = finish_input(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(flaky->calls(), 3);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("ok"));
}

TEST(policy_gives_up_after_max_attempts) {
  auto down = service(kAlways);
  AgentPolicy policy;
  policy.retry.max_attempts = 4;
  auto graph = single("down", with_policy(down, policy));
  RunHandle run = finish_input(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(down->calls(), 4);
  auto outcome = run.outcome(0);
  CHECK_EQ(outcome->status, NodeStatus::Failed);
  CHECK_EQ(outcome->failure.kind, FailureKind::Error);
  CHECK(contains(outcome->failure.message, "after 4 attempts"));
  CHECK(contains(outcome->failure.message, "service down"));
  CHECK(outcome->failure.error != nullptr);  // the last attempt's error object
}

TEST(policy_zero_attempts_means_one) {
  auto down = service(kAlways);
  AgentPolicy policy;
  policy.retry.max_attempts = 0;
  auto agent = std::make_shared<PolicyAgent>(down, policy);
  CHECK_EQ(agent->policy().retry.max_attempts, 1u);
  RunHandle run = finish_input(single("down", agent));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(down->calls(), 1);
  CHECK(!contains(run.outcome(0)->failure.message, "attempts"));
}

TEST(policy_every_attempt_gets_the_same_input) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto echo = lambda_agent([attempts](Invocation inv) {
    if (attempts->fetch_add(1) < 2) {
      inv.completion.fail(Failure{"again", {}});
    } else {
      inv.completion.succeed(make(as_str(inv.inputs.items.at(0).value) + ":done"));
    }
  });
  AgentPolicy policy;
  policy.retry.max_attempts = 3;
  GraphSpec spec;
  spec.add("first", inline_agent(append("first")));
  spec.add("echo", with_policy(echo, policy), {"first"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish_input(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  auto seen = echo->seen();
  REQUIRE_EQ(seen.size(), 3u);
  for (const auto& s : seen) {
    CHECK_EQ(s.kind, Inputs::Kind::Single);
    REQUIRE_EQ(s.values.size(), 1u);
    CHECK_EQ(as_str(s.values[0]), std::string("in:first"));
    CHECK_EQ(s.names.at(0), std::string("first"));
  }
  CHECK_EQ(as_str(outcome_of(run, graph, "echo").output), std::string("in:first:done"));
}

TEST(policy_waits_the_backoff_between_attempts) {
  // 80 ms then 160 ms: a lower bound on the gaps, which no scheduling delay can break.
  auto down = service(kAlways, milliseconds(0));
  AgentPolicy policy;
  policy.retry.max_attempts = 3;
  policy.retry.initial_backoff = 0.08;
  policy.retry.multiplier = 2.0;
  RunHandle run = finish_input(single("down", with_policy(down, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto started = down->started();
  REQUIRE_EQ(started.size(), 3u);
  CHECK(std::chrono::duration<double>(started[1] - started[0]).count() >= 0.08);
  CHECK(std::chrono::duration<double>(started[2] - started[1]).count() >= 0.16);
  CHECK(run.elapsed() >= 0.24);
}

TEST(policy_retry_on_decides_what_is_retried) {
  std::atomic<int> asked{0};
  AgentPolicy policy;
  policy.retry.max_attempts = 5;
  policy.retry.retry_on = [&](const Failure& failure) {
    asked.fetch_add(1);
    return contains(failure.message, "transient");
  };
  auto fatal = service(kAlways, milliseconds(1), "fatal: bad request");
  RunHandle run = finish_input(single("fatal", with_policy(fatal, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(fatal->calls(), 1);
  CHECK_EQ(asked.load(), 1);
  CHECK(contains(run.outcome(0)->failure.message, "fatal: bad request"));

  asked.store(0);
  auto transient = service(kAlways, milliseconds(1), "transient: try later");
  run = finish_input(single("transient", with_policy(transient, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(transient->calls(), 5);
  // Asked after every failure that could still be retried; with no attempt left there is
  // nothing to decide, so the last failure is not asked about.
  CHECK_EQ(asked.load(), 4);
}

TEST(policy_retry_on_sees_timeouts_by_kind) {
  // Only timeouts are worth retrying here; the predicate tells them by kind.
  auto hangs = std::make_shared<HeldAgent>();
  AgentPolicy policy;
  policy.retry.max_attempts = 2;
  policy.timeout = 0.05;
  std::mutex mutex;
  std::vector<FailureKind> kinds;
  policy.retry.retry_on = [&](const Failure& failure) {
    std::lock_guard<std::mutex> lock(mutex);
    kinds.push_back(failure.kind);
    return failure.kind == FailureKind::Timeout;
  };
  RunHandle run = start_input(single("hangs", with_policy(hangs, policy)));
  // Both attempts hang until they time out; their completions are resolved late.
  Invocation first = hangs.get()->take();
  Invocation second = hangs.get()->take();
  wait_end(run);
  first.completion.succeed(make(std::string("late")));
  second.completion.succeed(make(std::string("late")));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->status, NodeStatus::TimedOut);
  CHECK_EQ(run.outcome(0)->failure.kind, FailureKind::Timeout);
  CHECK(contains(run.outcome(0)->failure.message, "after 2 attempts: timed out after 0.05 s"));
  std::lock_guard<std::mutex> lock(mutex);
  CHECK_EQ(kinds.size(), 1u);  // after the first attempt; the second was the last
  for (FailureKind kind : kinds) CHECK(kind == FailureKind::Timeout);
}

// ---- timeouts ---------------------------------------------------------------------------

TEST(policy_timeout_cancels_the_attempt_token) {
  // An async-style agent: it registers how to stop, and stops when told.
  std::atomic<int> stopped{0};
  std::mutex mutex;
  std::vector<std::shared_ptr<CancelToken>> tokens;
  auto async_agent = lambda_agent([&](Invocation inv) {
    REQUIRE(inv.cancellation != nullptr);
    {
      std::lock_guard<std::mutex> lock(mutex);
      tokens.push_back(inv.cancellation);
    }
    auto shared = std::make_shared<Invocation>(std::move(inv));
    shared->cancellation->on_cancel([&stopped, shared] {
      stopped.fetch_add(1);
      shared->completion.cancelled();  // the coroutine was cancelled
    });
  });
  AgentPolicy policy;
  policy.timeout = 0.05;
  policy.retry.max_attempts = 3;
  RunHandle run = finish_input(single("async", with_policy(async_agent, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->status, NodeStatus::TimedOut);
  CHECK(contains(run.outcome(0)->failure.message, "after 3 attempts: timed out after 0.05 s"));
  CHECK_EQ(async_agent->calls(), 3);
  CHECK(eventually([&] { return stopped.load() == 3; }));
  std::lock_guard<std::mutex> lock(mutex);
  REQUIRE_EQ(tokens.size(), 3u);
  CHECK(tokens[0] != tokens[1]);  // each attempt has its own token
  CHECK(tokens[1] != tokens[2]);
  for (const auto& token : tokens) CHECK(token->cancelled());
}

TEST(policy_fast_attempt_is_not_timed_out) {
  std::shared_ptr<CancelToken> token;
  auto fast = lambda_agent([&](Invocation inv) {
    token = inv.cancellation;
    inv.completion.succeed(make(1));
  });
  AgentPolicy policy;
  policy.timeout = 30.0;
  RunHandle run = finish_input(single("fast", with_policy(fast, policy)));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  REQUIRE(token != nullptr);
  CHECK(!token->cancelled());
  CHECK(run.elapsed() < 10.0);
}

TEST(policy_timed_out_sync_attempt_keeps_its_limit_slot) {
  // A blocking attempt cannot be stopped: after its timeout it still runs, so it keeps
  // counting against the limit until it returns.
  auto limit = std::make_shared<Limiter>("slot", 1, 0.0, 0.0);
  Gate release_agent;
  std::atomic<bool> returned{false};
  auto blocking = lambda_agent([&](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([&, shared] {
      release_agent.wait();
      shared->completion.succeed(make(std::string("too late")));
      returned.store(true);
    });
  });
  AgentPolicy policy;
  policy.timeout = 0.05;
  policy.limits = {limit};
  RunHandle run = finish_input(single("blocking", with_policy(blocking, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->failure.kind, FailureKind::Timeout);
  CHECK_EQ(limit->snapshot().running, 1u);
  release_agent.open();
  REQUIRE(eventually([&] { return returned.load(); }));
  CHECK(eventually([&] { return limit->snapshot().running == 0; }));
  CHECK_EQ(run.outcome(0)->status, NodeStatus::TimedOut);  // the late result went nowhere
}

// ---- fallback ---------------------------------------------------------------------------

TEST(policy_fallback_after_the_final_failure) {
  auto down = service(kAlways);
  auto fallback = inline_agent([](const Inputs& in) {
    return make(as_str(in.items.at(0).value) + ":fallback");
  });
  AgentPolicy policy;
  policy.retry.max_attempts = 2;
  policy.fallback = fallback;
  RunHandle run = finish_input(single("down", with_policy(down, policy)), make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(down->calls(), 2);
  CHECK_EQ(fallback->calls(), 1);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:fallback"));
  auto seen = fallback->seen();
  REQUIRE_EQ(seen.size(), 1u);
  CHECK_EQ(seen[0].kind, Inputs::Kind::RunInput);  // the same inputs as the primary
}

TEST(policy_fallback_unused_on_success) {
  auto fine = service(0);
  auto fallback = inline_agent([](const Inputs&) { return make(std::string("fallback")); });
  AgentPolicy policy;
  policy.fallback = fallback;
  RunHandle run = finish_input(single("fine", with_policy(fine, policy)));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(fallback->calls(), 0);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("ok"));
}

TEST(policy_failing_fallback_fails_the_node) {
  auto down = service(kAlways);
  AgentPolicy policy;
  policy.fallback = failing_inline("fallback down too");
  RunHandle run = finish_input(single("down", with_policy(down, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->failure.message, std::string("fallback down too"));
}

TEST(policy_fallback_after_timeout_and_open_breaker) {
  // A timed-out attempt and a refused one end in the fallback just like an error.
  auto hangs = std::make_shared<HeldAgent>();
  auto fallback = inline_agent([](const Inputs&) { return make(std::string("cached")); });
  AgentPolicy policy;
  policy.timeout = 0.03;
  policy.fallback = fallback;
  policy.breaker = std::make_shared<CircuitBreaker>("fb", 1, 60.0, 60.0);
  auto graph = single("hangs", with_policy(hangs, policy));
  RunHandle run = start_input(graph);
  Invocation held = hangs->take();
  wait_end(run);
  held.completion.cancelled();
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("cached"));
  CHECK_EQ(policy.breaker->snapshot().state, BreakerState::Open);  // the timeout counted
  run = finish_input(graph);  // refused by the breaker, served by the fallback
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(hangs->calls(), 1);
  CHECK_EQ(fallback->calls(), 2);
  CHECK_EQ(policy.breaker->snapshot().rejected, 1u);
}

// ---- circuit breaker --------------------------------------------------------------------

TEST(policy_breaker_opens_then_fails_fast) {
  auto breaker = std::make_shared<CircuitBreaker>("svc", 2, 60.0, 60.0);
  auto down = service(kAlways);
  AgentPolicy policy;
  policy.breaker = breaker;
  auto graph = single("down", with_policy(down, policy));
  for (int i = 0; i < 2; ++i) {
    RunHandle run = finish_input(graph);
    CHECK_EQ(run.outcome(0)->failure.kind, FailureKind::Error);
  }
  CHECK_EQ(breaker->snapshot().state, BreakerState::Open);
  for (int i = 0; i < 3; ++i) {
    RunHandle run = finish_input(graph);
    CHECK_EQ(run.status(), RunStatus::Failed);
    auto outcome = run.outcome(0);
    CHECK_EQ(outcome->failure.kind, FailureKind::CircuitOpen);
    CHECK(contains(outcome->failure.message, "circuit breaker 'svc' is open"));
  }
  CHECK_EQ(down->calls(), 2);
  CHECK_EQ(breaker->snapshot().rejected, 3u);
  CHECK_EQ(breaker->snapshot().total_failures, 2u);
}

TEST(policy_open_breaker_stops_retries) {
  auto breaker = std::make_shared<CircuitBreaker>("retry", 2, 60.0, 60.0);
  auto down = service(kAlways);
  AgentPolicy policy;
  policy.breaker = breaker;
  policy.retry.max_attempts = 5;
  RunHandle run = finish_input(single("down", with_policy(down, policy)));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(down->calls(), 2);  // the third attempt is refused, and not retried
  CHECK_EQ(run.outcome(0)->failure.kind, FailureKind::CircuitOpen);
  CHECK_EQ(breaker->snapshot().rejected, 1u);
}

TEST(policy_breaker_probe_closes_it_again) {
  auto breaker = std::make_shared<CircuitBreaker>("heal", 1, 60.0, 0.3);
  auto heals = service(1);  // fails once, then works
  AgentPolicy policy;
  policy.breaker = breaker;
  auto graph = single("heals", with_policy(heals, policy));
  CHECK_EQ(finish_input(graph).status(), RunStatus::Failed);
  const auto opened = std::chrono::steady_clock::now();
  RunHandle refused = finish_input(graph);
  if (seconds_since(opened) < 0.25) {  // else the reset timeout may have passed meanwhile
    CHECK_EQ(refused.outcome(0)->failure.kind, FailureKind::CircuitOpen);
  }
  if (refused.status() == RunStatus::Failed) {
    REQUIRE(eventually([&] { return breaker->snapshot().state == BreakerState::HalfOpen; }));
    CHECK_EQ(finish_input(graph).status(), RunStatus::Succeeded);  // the probe
  }
  CHECK_EQ(breaker->snapshot().state, BreakerState::Closed);
  CHECK_EQ(finish_input(graph).status(), RunStatus::Succeeded);
  CHECK_EQ(heals->calls(), 3);  // the refused call never reached the service
  CHECK_EQ(breaker->snapshot().total_failures, 1u);
}

TEST(policy_cancelled_probe_is_abandoned_not_failed) {
  auto breaker = std::make_shared<CircuitBreaker>("abandon", 1, 60.0, 0.05);
  breaker->record_failure();
  REQUIRE(eventually([&] { return breaker->snapshot().state == BreakerState::HalfOpen; }));
  auto held = std::make_shared<HeldAgent>();
  AgentPolicy policy;
  policy.breaker = breaker;
  auto graph = single("probe", with_policy(held, policy));
  RunHandle run = start_input(graph);
  Invocation probe = held->take();
  CHECK(!breaker->allow());  // the probe is in flight
  run.cancel();
  probe.completion.cancelled();
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  auto snap = breaker->snapshot();
  CHECK_EQ(snap.state, BreakerState::HalfOpen);
  CHECK_EQ(snap.total_failures, 1u);
  CHECK(breaker->allow());  // the slot was freed for the next probe
  breaker->record_success();
}

// ---- limits -----------------------------------------------------------------------------

TEST(policy_shared_limit_caps_several_agents) {
  // Two agents share one provider limit of 2; six calls of each in one fan-out.
  auto limit = std::make_shared<Limiter>("provider", 2, 0.0, 0.0);
  Concurrency concurrency;
  auto make_worker = [&] {
    return lambda_agent([&](Invocation inv) {
      auto shared = std::make_shared<Invocation>(std::move(inv));
      Runtime::instance().pool().submit([&, shared] {
        concurrency.enter();
        std::this_thread::sleep_for(milliseconds(5));
        concurrency.leave();
        shared->completion.succeed(make(1));
      });
    });
  };
  auto a = make_worker();
  auto b = make_worker();
  AgentPolicy policy;
  policy.limits = {limit};
  GraphSpec spec;
  spec.add("entry", inline_agent([](const Inputs&) { return make(0); }));
  std::vector<std::string> all;
  for (int i = 0; i < 6; ++i) {
    spec.add("a" + std::to_string(i), with_policy(a, policy), {"entry"});
    spec.add("b" + std::to_string(i), with_policy(b, policy), {"entry"});
    all.push_back("a" + std::to_string(i));
    all.push_back("b" + std::to_string(i));
  }
  spec.add("join", inline_agent([](const Inputs& in) { return make(static_cast<int>(in.items.size())); }),
           all);
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish_input(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(run.sink_outputs().at(0).second), 12);
  CHECK_EQ(a->calls() + b->calls(), 12);
  CHECK(concurrency.most.load() <= 2);
  CHECK(limit->snapshot().max_running_seen <= 2u);
  CHECK(eventually([&] { return limit->snapshot().running == 0; }));
  CHECK_EQ(limit->snapshot().granted, 12u);
}

TEST(policy_every_limit_is_held_for_the_call) {
  // Two limits: a call needs a slot of each, and gives both back.
  auto per_agent = std::make_shared<Limiter>("agent", 1, 0.0, 0.0);
  auto provider = std::make_shared<Limiter>("provider", 3, 0.0, 0.0);
  auto held = std::make_shared<HeldAgent>();
  AgentPolicy policy;
  policy.limits = {per_agent, provider};
  auto graph = single("held", with_policy(held, policy));
  RunHandle first = start_input(graph);
  RunHandle second = start_input(graph);
  Invocation one = held->take();
  CHECK_EQ(per_agent->snapshot().running, 1u);
  CHECK_EQ(provider->snapshot().running, 1u);
  CHECK(eventually([&] { return per_agent->snapshot().waiting == 1; }));
  CHECK_EQ(held->held(), 0u);
  one.completion.succeed(make(1));
  Invocation two = held->take();
  two.completion.succeed(make(2));
  wait_end(first);
  wait_end(second);
  CHECK_EQ(first.status(), RunStatus::Succeeded);
  CHECK_EQ(second.status(), RunStatus::Succeeded);
  CHECK(eventually([&] {
    return per_agent->snapshot().running == 0 && provider->snapshot().running == 0;
  }));
  CHECK_EQ(per_agent->snapshot().max_running_seen, 1u);
}

TEST(policy_retry_takes_a_fresh_slot_per_attempt) {
  // Between attempts the slot is free for others.
  auto limit = std::make_shared<Limiter>("per-attempt", 1, 0.0, 0.0);
  auto flaky = service(2);
  AgentPolicy policy;
  policy.limits = {limit};
  policy.retry.max_attempts = 3;
  policy.retry.initial_backoff = 0.01;
  RunHandle run = finish_input(single("flaky", with_policy(flaky, policy)));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK(eventually([&] { return limit->snapshot().running == 0; }));
  CHECK_EQ(limit->snapshot().granted, 3u);
}

// ---- the run ends while a policy waits --------------------------------------------------

TEST(policy_run_cancel_during_backoff_stops_retrying) {
  // A cancelled run's agent must not sit out a long backoff: nothing more can come of
  // it, and while it waits it holds the run's flow graph (whose destruction waits for
  // it) and counts as in flight for Runtime::shutdown.
  auto down = failing_inline("down");
  AgentPolicy policy;
  policy.retry.max_attempts = 5;
  policy.retry.initial_backoff = 20.0;
  auto graph = single("down", with_policy(down, policy));
  RunHandle run = start_input(graph);
  REQUIRE(eventually([&] { return down->calls() == 1; }));
  std::this_thread::sleep_for(milliseconds(20));  // into the backoff
  const auto cancelled_at = std::chrono::steady_clock::now();
  CHECK(run.cancel());
  CHECK(eventually([&] { return run.outcome(0)->status != NodeStatus::Running; },
                   milliseconds(10000)));
  CHECK(seconds_since(cancelled_at) < 10.0);
  CHECK_EQ(run.outcome(0)->status, NodeStatus::Cancelled);
  CHECK_EQ(down->calls(), 1);  // no attempt after the cancel
}

TEST(policy_run_cancel_while_waiting_for_a_limit) {
  auto limit = std::make_shared<Limiter>("busy", 1, 0.0, 0.0);
  std::atomic<bool> outside_granted{false};
  limit->acquire([&] { outside_granted.store(true); });  // someone else holds the slot
  REQUIRE(outside_granted.load());
  auto never = service(0);
  AgentPolicy policy;
  policy.limits = {limit};
  auto graph = single("queued", with_policy(never, policy));
  RunHandle run = start_input(graph);
  REQUIRE(eventually([&] { return limit->snapshot().waiting == 1; }));
  CHECK(run.cancel());
  CHECK_EQ(limit->snapshot().waiting, 0u);  // withdrawn at once
  CHECK(eventually([&] { return run.outcome(0)->status == NodeStatus::Cancelled; }));
  limit->release();
  std::this_thread::sleep_for(milliseconds(30));
  CHECK_EQ(never->calls(), 0);
  CHECK_EQ(limit->snapshot().running, 0u);
}

TEST(policy_run_cancel_while_granted_call_waits_for_the_arena) {
  // Many queued calls, cancelled at random moments of their grant: whatever the
  // interleaving, every slot comes back and no cancelled call starts afterwards.
  auto limit = std::make_shared<Limiter>("churn", 2, 0.0, 0.0);
  auto quick = service(0, milliseconds(1));
  AgentPolicy policy;
  policy.limits = {limit};
  auto graph = single("quick", with_policy(quick, policy));
  std::vector<RunHandle> runs;
  for (int i = 0; i < 40; ++i) {
    runs.push_back(start_input(graph));
    if (i % 3 == 0) runs[static_cast<std::size_t>(i / 2)].cancel();
  }
  for (auto& run : runs) wait_end(run);
  CHECK(eventually([&] {
    auto snap = limit->snapshot();
    return snap.running == 0 && snap.waiting == 0;
  }));
  for (auto& run : runs) {
    CHECK(eventually([&] {
      const NodeStatus s = run.outcome(0)->status;
      return s != NodeStatus::Running;
    }));
  }
  CHECK(limit->snapshot().max_running_seen <= 2u);
}

// ---- defect 6: a breaker behind a limit queue -------------------------------------------

TEST(policy_breaker_is_asked_again_when_the_limit_grants) {
  // Issue 7, defect 6. Fifty calls queue behind a limit of one while the breaker is still
  // closed; the first call fails and opens it. The queued calls must then be refused
  // when their slot is granted, instead of all reaching the failing service.
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 60.0);
  auto limit = std::make_shared<Limiter>("svc", 1, 0.0, 0.0);
  auto down = service(kAlways, milliseconds(20));
  AgentPolicy policy;
  policy.breaker = breaker;
  policy.limits = {limit};
  auto graph = single("down", with_policy(down, policy));
  std::vector<RunHandle> runs;
  for (int i = 0; i < 50; ++i) runs.push_back(start_input(graph));
  int refused = 0;
  for (auto& run : runs) {
    wait_end(run);
    CHECK_EQ(run.status(), RunStatus::Failed);
    if (run.outcome(0)->failure.kind == FailureKind::CircuitOpen) ++refused;
  }
  CHECK_EQ(down->calls(), 1);
  CHECK_EQ(refused, 49);
  auto snap = breaker->snapshot();
  CHECK_EQ(snap.state, BreakerState::Open);
  CHECK_EQ(snap.rejected, 49u);
  CHECK_EQ(snap.total_failures, 1u);
  CHECK(eventually([&] {
    auto l = limit->snapshot();
    return l.running == 0 && l.waiting == 0;
  }));
}

TEST(policy_refused_grant_gives_back_its_slot) {
  // Queued while closed, refused at the grant because the breaker opened meanwhile: the
  // limit slot comes back, the probe slot is untouched, and the breaker heals normally.
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 0.5);
  GuardedService s(breaker);
  RunHandle queued = start_input(s.graph);
  REQUIRE(eventually([&] { return s.limit->snapshot().waiting == 1; }));
  const auto opened = std::chrono::steady_clock::now();
  breaker->record_failure();  // another caller saw the service fail: open
  s.limit->release();
  wait_end(queued);
  // Unless the grant took longer than the reset timeout (then the call was the probe).
  if (seconds_since(opened) < 0.45) {
    CHECK_EQ(queued.status(), RunStatus::Failed);
    CHECK_EQ(queued.outcome(0)->failure.kind, FailureKind::CircuitOpen);
    CHECK_EQ(s.healthy->calls(), 0);
    CHECK_EQ(breaker->snapshot().rejected, 1u);
  }
  CHECK(eventually([&] { return s.limit->snapshot().running == 0; }));
  if (queued.status() == RunStatus::Failed) {
    // After the reset timeout the next call is the probe, and it closes the breaker.
    REQUIRE(eventually([&] { return breaker->snapshot().state == BreakerState::HalfOpen; }));
    RunHandle probe = finish_input(s.graph);
    CHECK_EQ(probe.status(), RunStatus::Succeeded);
  }
  CHECK_EQ(breaker->snapshot().state, BreakerState::Closed);
  CHECK_EQ(s.healthy->calls(), 1);
  CHECK(eventually([&] { return s.limit->snapshot().running == 0; }));
}

TEST(policy_probe_waiting_for_a_limit_is_not_lost) {
  // The breaker is half-open when the call queues for a limit. When the slot comes, the
  // call must be able to probe: a check that takes the probe before queueing and asks
  // again at the grant would refuse its own probe and leave the breaker stuck.
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 0.05);
  breaker->record_failure();
  REQUIRE(eventually([&] { return breaker->snapshot().state == BreakerState::HalfOpen; }));
  GuardedService s(breaker);
  RunHandle run = start_input(s.graph);
  REQUIRE(eventually([&] { return s.limit->snapshot().waiting == 1; }));
  s.limit->release();
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(s.healthy->calls(), 1);
  CHECK_EQ(breaker->snapshot().state, BreakerState::Closed);
  CHECK_EQ(finish_input(s.graph).status(), RunStatus::Succeeded);
  CHECK(eventually([&] { return s.limit->snapshot().running == 0; }));
}

TEST(policy_refused_grant_does_not_free_another_calls_probe) {
  // Half-open with a probe in flight elsewhere; a queued call granted now is refused, and
  // its refusal must not free the probe slot it never held (a second probe would go out).
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 0.05);
  GuardedService s(breaker);
  RunHandle queued = s.queue_while_another_probes();
  s.limit->release();
  wait_end(queued);
  CHECK_EQ(queued.outcome(0)->failure.kind, FailureKind::CircuitOpen);
  CHECK_EQ(s.healthy->calls(), 0);
  CHECK(!breaker->allow());  // still that caller's probe
  breaker->record_success();
  CHECK_EQ(breaker->snapshot().state, BreakerState::Closed);
  CHECK(eventually([&] { return s.limit->snapshot().running == 0; }));
}

TEST(policy_withdrawn_call_does_not_free_another_calls_probe) {
  // A call queued while the breaker was closed is withdrawn (its run was cancelled) while
  // another caller probes: the withdrawal must leave that probe slot alone.
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 0.05);
  GuardedService s(breaker);
  RunHandle queued = s.queue_while_another_probes();
  CHECK(queued.cancel());
  CHECK_EQ(s.limit->snapshot().waiting, 0u);
  CHECK(!breaker->allow());  // the probe slot is still taken
  breaker->record_success();
  s.limit->release();
  CHECK_EQ(s.healthy->calls(), 0);
}

TEST(policy_open_breaker_fails_fast_without_queueing) {
  // While the breaker is open, a call does not wait for a limit slot to be refused.
  auto breaker = std::make_shared<CircuitBreaker>("svc", 1, 60.0, 60.0);
  breaker->record_failure();
  GuardedService s(breaker);
  RunHandle run = finish_input(s.graph);
  CHECK_EQ(run.outcome(0)->failure.kind, FailureKind::CircuitOpen);
  CHECK_EQ(s.limit->snapshot().waiting, 0u);
  CHECK_EQ(breaker->snapshot().rejected, 1u);
  s.limit->release();
  CHECK_EQ(s.healthy->calls(), 0);
}

// ---- the timeline's steps -------------------------------------------------------------

namespace {

RunHandle start_recording(const std::shared_ptr<CompiledGraph>& graph, EventKinds kinds) {
  RunOptions options;
  options.input = make(std::string("in"));
  options.record_events = kinds;
  return graph->start(std::move(options));
}

std::vector<std::string> kinds_of(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(to_string(e.kind));
  return out;
}

}  // namespace

TEST(policy_steps_are_recorded_in_order_with_attempts_and_delays) {
  auto flaky = service(1);
  auto limit = std::make_shared<Limiter>("svc", 1, 0.0, 0.0);
  limit->acquire([] {});  // held: the call queues until it is released
  AgentPolicy policy;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = 0.01;
  policy.retry.jitter = 0.0;
  policy.limits = {limit};
  auto graph = single("flaky", with_policy(flaky, policy));
  RunHandle run = start_recording(graph, EventKinds::all());
  REQUIRE(eventually([&] { return limit->snapshot().waiting == 1; }));
  limit->release();
  std::vector<Event> events = drain_events(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  // The second attempt finds the slot free: a call queues only when it has to wait.
  CHECK_EQ(kinds_of(events), (std::vector<std::string>{"start", "queued", "attempt", "retry",
                                                       "attempt", "finish"}));
  CHECK_EQ(events[1].message, std::string("svc"));
  CHECK_EQ(events[2].attempt, 1u);
  CHECK_EQ(events[3].attempt, 1u);
  CHECK_EQ(events[3].message, std::string("service down"));
  CHECK(events[3].payload != nullptr);  // the failed attempt's error
  CHECK(std::abs(events[3].delay - 0.01) < 1e-9);
  CHECK_EQ(events[4].attempt, 2u);
  for (std::size_t i = 1; i < events.size(); ++i) CHECK(events[i].seconds >= events[i - 1].seconds);
  for (const Event& e : events) CHECK_EQ(e.agent, std::string("flaky"));
}

TEST(policy_steps_record_a_fallback) {
  AgentPolicy policy;
  policy.fallback = inline_agent([](const Inputs&) { return make(std::string("cached")); });
  auto graph = single("down", with_policy(service(kAlways), policy));
  RunHandle run = start_recording(graph, EventKinds::all());
  std::vector<Event> events = drain_events(run);
  CHECK_EQ(kinds_of(events),
           (std::vector<std::string>{"start", "attempt", "fallback", "finish"}));
  CHECK_EQ(events[2].message, std::string("service down"));
}

TEST(policy_steps_are_not_recorded_unless_asked_for) {
  AgentPolicy policy;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = 0.0;
  auto graph = single("flaky", with_policy(service(1), policy));
  RunHandle run = start_recording(graph, {EventKind::Start, EventKind::Finish});
  CHECK_EQ(kinds_of(drain_events(run)), (std::vector<std::string>{"start", "finish"}));
}
