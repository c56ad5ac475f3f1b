// Run deadlines: a run still going at its deadline ends as TimedOut; agents that had not
// started never start, late results are discarded, child runs end with it, and policies
// waiting on the run's behalf (a backoff, a limit queue) give up.
#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "counterpoint/limiter.hpp"
#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;

namespace {

RunOptions with_deadline(double seconds, std::shared_ptr<RunObserver> observer = {}) {
  RunOptions options;
  options.input = make(std::string("in"));
  options.deadline_seconds = seconds;
  options.observer = std::move(observer);
  return options;
}

}  // namespace

TEST(deadline_times_out_a_run_and_discards_late_results) {
  auto slow = std::make_shared<HeldAgent>();
  auto after = inline_agent(append("after"));
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("slow", slow);
  spec.add("after", after, {"slow"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start_with(graph, with_deadline(0.2, observer));
  Invocation held = slow->take();
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  CHECK(run.elapsed() >= 0.1);
  CHECK(held.completion.run_ended());
  CHECK_EQ(status_of(run, graph, "slow"), NodeStatus::Running);  // still out there
  // Its result arrives after the deadline: discarded, and nothing after it starts.
  held.completion.succeed(make(std::string("late")));
  CHECK_EQ(status_of(run, graph, "slow"), NodeStatus::Cancelled);
  CHECK_EQ(status_of(run, graph, "after"), NodeStatus::Pending);
  CHECK_EQ(after->calls(), 0);
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  CHECK(run.sink_outputs().empty());
  CHECK(eventually([&] { return observer->calls() == 1; }));
  CHECK_EQ(observer->last_status(), RunStatus::TimedOut);
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(observer->calls(), 1);
}

TEST(deadline_agents_after_it_never_start) {
  // A fan-out whose entry finishes after the deadline: none of its successors start,
  // nor the branch that was waiting for a second predecessor.
  auto entry = std::make_shared<HeldAgent>();
  auto x = inline_agent(append("x"));
  auto y = inline_agent(append("y"));
  auto z = inline_agent(append("z"));
  auto other = inline_agent(append("other"));
  GraphSpec spec;
  spec.add("entry", entry);
  spec.add("other", other);
  spec.add("x", x, {"entry"});
  spec.add("y", y, {"entry"});
  spec.add("z", z, {"entry", "other"});
  auto graph = CompiledGraph::compile(spec);
  // Long enough for "other" to run first even on a loaded machine.
  RunHandle run = start_with(graph, with_deadline(0.3));
  Invocation held = entry->take();
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  held.completion.succeed(make(std::string("late")));
  std::this_thread::sleep_for(milliseconds(30));
  CHECK_EQ(x->calls() + y->calls() + z->calls(), 0);
  CHECK_EQ(other->calls(), 1);  // it ran before the deadline
  for (const char* name : {"x", "y", "z"}) CHECK_EQ(status_of(run, graph, name), NodeStatus::Pending);
  CHECK_EQ(status_of(run, graph, "other"), NodeStatus::Succeeded);
}

TEST(deadline_not_reached_changes_nothing) {
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("quick", inline_agent(append("quick")));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_deadline(0.5, observer));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  std::this_thread::sleep_for(milliseconds(600));  // past the deadline
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(observer->calls(), 1);
  CHECK_EQ(observer->last_status(), RunStatus::Succeeded);
}

TEST(deadline_zero_or_negative_means_none) {
  auto slow = pooled_agent(milliseconds(150), append("slow"));
  GraphSpec spec;
  spec.add("slow", slow);
  auto graph = CompiledGraph::compile(spec);
  for (double none : {0.0, -1.0}) {
    RunHandle run = finish(graph, with_deadline(none));
    CHECK_EQ(run.status(), RunStatus::Succeeded);
    CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:slow"));
  }
}

TEST(deadline_ends_child_runs) {
  auto inner = std::make_shared<HeldAgent>();
  GraphSpec child_spec;
  child_spec.add("inner", inner);
  auto child = CompiledGraph::compile(child_spec);
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("delegate", lambda_agent([child](Invocation inv) {
             inv.completion.delegate(child, inv.inputs.items.at(0).value);
           }));
  auto graph = CompiledGraph::compile(spec);
  RunOptions options = with_deadline(0.2);
  options.context_observer = observer;  // told about the child run too
  RunHandle run = graph->start(std::move(options));
  Invocation held = inner->take();
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  CHECK(eventually([&] { return observer->calls() == 2; }));
  CHECK(held.completion.run_ended());  // the child run ended with its parent
  held.completion.succeed(make(std::string("late")));
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  CHECK(eventually([&] { return status_of(run, graph, "delegate") == NodeStatus::Cancelled; }));
}

TEST(deadline_stops_a_retry_backoff) {
  auto down = lambda_agent([](Invocation inv) { inv.completion.fail(Failure{"down", {}}); });
  AgentPolicy policy;
  policy.retry.max_attempts = 10;
  policy.retry.initial_backoff = 30.0;
  GraphSpec spec;
  spec.add("down", with_policy(down, policy));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_deadline(0.1));
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  // The 30 s backoff ends with the run: the node resolves now, and never retries.
  CHECK(eventually([&] { return run.outcome(0)->status == NodeStatus::Cancelled; },
                   milliseconds(10000)));
  CHECK_EQ(down->calls(), 1);
}

TEST(deadline_withdraws_calls_waiting_for_a_limit) {
  auto limit = std::make_shared<Limiter>("deadline", 1, 0.0, 0.0);
  limit->acquire([] {});  // held elsewhere for the whole run
  auto never = inline_agent(append("never"));
  AgentPolicy policy;
  policy.limits = {limit};
  GraphSpec spec;
  spec.add("queued", with_policy(never, policy));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_deadline(0.05));
  CHECK_EQ(run.status(), RunStatus::TimedOut);
  CHECK(eventually([&] { return limit->snapshot().waiting == 0; }));
  CHECK(eventually([&] { return run.outcome(0)->status == NodeStatus::Cancelled; }));
  limit->release();
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(never->calls(), 0);
  CHECK_EQ(limit->snapshot().running, 0u);
}

TEST(deadline_many_runs_time_out_independently) {
  // Half the runs have a deadline they cannot meet, half have none; all share one graph.
  auto held = std::make_shared<HeldAgent>();
  GraphSpec spec;
  spec.add("held", held);
  auto graph = CompiledGraph::compile(spec);
  std::vector<RunHandle> timed;
  std::vector<RunHandle> free;
  for (int i = 0; i < 10; ++i) {
    timed.push_back(start_with(graph, with_deadline(0.05)));
    free.push_back(start_with(graph, with_deadline(0.0)));
  }
  for (auto& run : timed) {
    wait_end(run);
    CHECK_EQ(run.status(), RunStatus::TimedOut);
  }
  for (auto& run : free) CHECK(!run.done());
  // Resolve whatever was started: every free run's agent, and those of the timed runs
  // that started before their deadline (on a loaded machine, maybe not all of them).
  auto all_free_done = [&] {
    for (auto& run : free) {
      if (!run.done()) return false;
    }
    return true;
  };
  auto drain = [&] {
    while (held->held() > 0) held->take().completion.succeed(make(0));
  };
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!all_free_done() && std::chrono::steady_clock::now() < give_up) {
    drain();
    std::this_thread::sleep_for(milliseconds(1));
  }
  std::this_thread::sleep_for(milliseconds(50));
  drain();
  CHECK(held->calls() >= 10);
  for (auto& run : free) {
    wait_end(run);
    CHECK_EQ(run.status(), RunStatus::Succeeded);
  }
  for (auto& run : timed) CHECK_EQ(run.status(), RunStatus::TimedOut);
}
