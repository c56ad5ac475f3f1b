// Budgets: usage reported by agents is summed per run, a spent budget stops agents from
// starting (running ones finish), and child runs (delegation) report to and spend the
// budget of their root run.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;

namespace {

// Succeeds inline, passing its input on and reporting `tokens`.
std::shared_ptr<LambdaAgent> spends(double tokens, double cost = 0.0) {
  return lambda_agent([tokens, cost](Invocation inv) {
    Payload input = inv.inputs.items.empty() ? Payload{} : inv.inputs.items.front().value;
    Usage usage{{"tokens", tokens}};
    if (cost > 0) usage.emplace_back("cost", cost);
    inv.completion.resolve(success_using(input, std::move(usage)));
  });
}

RunOptions with_budget(Usage budget) {
  RunOptions options;
  options.input = make(std::string("in"));
  options.budget = std::move(budget);
  return options;
}

}  // namespace

TEST(budget_usage_totals_sum_every_agent) {
  auto pooled = std::make_shared<OutcomeAgent>(milliseconds(1), [](const Inputs& in) {
    return success_using(in.items.at(0).value, {{"tokens", 10}, {"cost", 0.25}});
  });
  auto fails = lambda_agent([](Invocation inv) {
    Outcome outcome = Outcome::failed(Failure{"spent and failed", {}});
    outcome.usage = {{"tokens", 5}};
    inv.completion.resolve(std::move(outcome));
  });
  GraphSpec spec;
  spec.add("a", pooled);
  spec.add("b", pooled, {"a"});
  spec.add("c", pooled, {"b"});
  spec.add("f", fails, {"a"}).on_error = ErrorMode::Continue;
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish_input(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  const Usage total = run.usage();
  CHECK_EQ(usage_of(total, "tokens"), 35.0);  // failed agents spent too
  CHECK_EQ(usage_of(total, "cost"), 0.75);
  CHECK_EQ(usage_of(total, "unknown"), 0.0);
  CHECK_EQ(usage_of(outcome_of(run, graph, "b").usage, "tokens"), 10.0);
  CHECK_EQ(usage_of(outcome_of(run, graph, "f").usage, "tokens"), 5.0);
  CHECK(!run.budget_exhausted());  // no budget: never exhausted
}

TEST(budget_spent_stops_agents_from_starting) {
  auto a = spends(10);
  auto b = spends(10);
  auto c = spends(10);
  auto d = spends(10);
  auto e = spends(10);
  auto graph = chain_of({{"a", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}});
  RunHandle run = finish(graph, with_budget({{"tokens", 25}, {"cost", 100}}));
  CHECK_EQ(run.status(), RunStatus::Failed);  // the sink never ran
  CHECK(run.budget_exhausted());
  CHECK_EQ(a->calls() + b->calls() + c->calls(), 3);  // c took it to 30 >= 25
  CHECK_EQ(d->calls(), 0);
  CHECK_EQ(e->calls(), 0);
  CHECK_EQ(status_of(run, graph, "c"), NodeStatus::Succeeded);
  auto skipped = outcome_of(run, graph, "d");
  CHECK_EQ(skipped.status, NodeStatus::Skipped);
  CHECK_EQ(std::string(skipped.skip_reason), std::string("the run's budget was spent"));
  // Everything after a budget stop gives the budget as its reason too.
  CHECK_EQ(std::string(outcome_of(run, graph, "e").skip_reason),
           std::string("the run's budget was spent"));
  CHECK_EQ(usage_of(run.usage(), "tokens"), 30.0);
  CHECK(!run.failed_node().has_value());  // nothing failed: it stopped
}

TEST(budget_limit_reached_exactly_is_spent) {
  auto first = spends(10);
  auto second = spends(1);
  GraphSpec spec;
  spec.add("first", first);
  spec.add("second", second, {"first"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_budget({{"tokens", 10}}));
  CHECK(run.budget_exhausted());
  CHECK_EQ(second->calls(), 0);
  // Below the limit nothing stops.
  run = finish(graph, with_budget({{"tokens", 11.5}}));  // 10 + 1 stays below
  CHECK(!run.budget_exhausted());
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(second->calls(), 1);
}

TEST(budget_any_named_total_stops_the_run) {
  auto pricey = spends(1, 0.6);
  auto next = spends(1, 0.6);
  auto last = spends(1, 0.6);
  GraphSpec spec;
  spec.add("pricey", pricey);
  spec.add("next", next, {"pricey"});
  spec.add("last", last, {"next"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_budget({{"tokens", 1000}, {"cost", 1.0}}));
  CHECK(run.budget_exhausted());
  CHECK_EQ(next->calls(), 1);  // 1.2 >= 1.0 after it
  CHECK_EQ(last->calls(), 0);
}

TEST(budget_running_agents_finish_and_see_it_spent) {
  // Two branches run at once; the first to finish spends the budget. The other one was
  // already running: it finishes and keeps its output, and can tell the budget is gone.
  // The join after them never starts.
  auto branch = std::make_shared<HeldAgent>();
  auto join = spends(0);
  GraphSpec spec;
  spec.add("entry", spends(0));
  spec.add("p1", branch, {"entry"});
  spec.add("p2", branch, {"entry"});
  spec.add("join", join, {"p1", "p2"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start_with(graph, with_budget({{"tokens", 10}}));
  Invocation first = branch->take();
  Invocation second = branch->take();
  CHECK(!second.completion.budget_exhausted());
  first.completion.resolve(success_using(make(std::string("one")), {{"tokens", 20}}));
  CHECK(second.completion.budget_exhausted());
  CHECK(run.budget_exhausted());
  second.completion.resolve(success_using(make(std::string("two")), {{"tokens", 20}}));
  wait_end(run);
  CHECK_EQ(status_of(run, graph, "p1"), NodeStatus::Succeeded);
  CHECK_EQ(status_of(run, graph, "p2"), NodeStatus::Succeeded);
  CHECK_EQ(status_of(run, graph, "join"), NodeStatus::Skipped);
  CHECK_EQ(join->calls(), 0);
  CHECK_EQ(usage_of(run.usage(), "tokens"), 40.0);  // what ran is still accounted for
  CHECK_EQ(run.status(), RunStatus::Failed);
}

TEST(budget_child_runs_count_against_the_root) {
  // The delegating agent's child graph spends tokens; the parent's budget covers them,
  // so the child stops when the parent's budget is spent.
  GraphSpec child_spec;
  std::vector<std::shared_ptr<LambdaAgent>> steps;
  for (int i = 1; i <= 4; ++i) {
    steps.push_back(spends(10));
    std::vector<std::string> after;
    if (i > 1) after.push_back("c" + std::to_string(i - 1));
    child_spec.add("c" + std::to_string(i), steps.back(), after);
  }
  auto child = CompiledGraph::compile(child_spec);
  auto delegating = lambda_agent([child](Invocation inv) {
    inv.completion.delegate(child, inv.inputs.items.at(0).value);
  });
  auto after = spends(0);
  GraphSpec spec;
  spec.add("d", delegating);
  spec.add("after", after, {"d"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_budget({{"tokens", 25}}));
  CHECK_EQ(steps[0]->calls() + steps[1]->calls() + steps[2]->calls(), 3);
  CHECK_EQ(steps[3]->calls(), 0);
  CHECK(run.budget_exhausted());
  CHECK_EQ(usage_of(run.usage(), "tokens"), 30.0);  // the child's usage, at the root
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto d = outcome_of(run, graph, "d");
  CHECK_EQ(d.status, NodeStatus::Failed);
  CHECK_EQ(d.failure.kind, FailureKind::Budget);
  CHECK_EQ(after->calls(), 0);
}

TEST(budget_grandchild_usage_reaches_the_root) {
  GraphSpec leaf_spec;
  auto leaf_agent = spends(7);
  leaf_spec.add("leaf", leaf_agent);
  auto leaf = CompiledGraph::compile(leaf_spec);
  GraphSpec middle_spec;
  middle_spec.add("to_leaf", lambda_agent([leaf](Invocation inv) {
                    inv.completion.delegate(leaf, inv.inputs.items.at(0).value);
                  }));
  middle_spec.add("own", spends(3), {"to_leaf"});
  auto middle = CompiledGraph::compile(middle_spec);
  GraphSpec spec;
  spec.add("to_middle", lambda_agent([middle](Invocation inv) {
             inv.completion.delegate(middle, inv.inputs.items.at(0).value);
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, with_budget({{"tokens", 1000}}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(usage_of(run.usage(), "tokens"), 10.0);
  CHECK(!run.budget_exhausted());
  // A budget below what the grandchild spends stops the middle graph's next agent.
  run = finish(graph, with_budget({{"tokens", 5}}));
  CHECK(run.budget_exhausted());
  CHECK_EQ(usage_of(run.usage(), "tokens"), 7.0);
  CHECK_EQ(run.status(), RunStatus::Failed);
}

TEST(budget_spent_stops_retries_and_the_fallback) {
  // The retrying agent's first attempt fails after another agent spent the budget: no
  // second attempt and no fallback (a spent budget stops every new invocation).
  Gate fail_now;
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto flaky = lambda_agent([&fail_now, attempts](Invocation inv) {
    attempts->fetch_add(1);
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([&fail_now, shared] {
      fail_now.wait();
      shared->completion.fail(Failure{"flaky", {}});
    });
  });
  auto fallback = spends(0);
  AgentPolicy policy;
  policy.retry.max_attempts = 3;
  policy.fallback = fallback;
  auto spender = std::make_shared<HeldAgent>();
  GraphSpec spec;
  spec.add("spender", spender);
  spec.add("retrier", with_policy(flaky, policy)).on_error = ErrorMode::Continue;
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start_with(graph, with_budget({{"tokens", 50}}));
  Invocation spend = spender->take();
  REQUIRE(eventually([&] { return attempts->load() == 1; }));
  spend.completion.resolve(success_using(make(std::string("spent")), {{"tokens", 100}}));
  fail_now.open();
  wait_end(run);
  CHECK_EQ(attempts->load(), 1);
  CHECK_EQ(fallback->calls(), 0);
  auto retrier = outcome_of(run, graph, "retrier");
  CHECK_EQ(retrier.status, NodeStatus::Failed);
  CHECK(contains(retrier.failure.message, "budget is spent"));
  CHECK(contains(retrier.failure.message, "flaky"));
}

TEST(budget_is_per_run) {
  // Concurrent runs of one graph each have their own totals and their own budget.
  auto agent = std::make_shared<OutcomeAgent>(milliseconds(1), [](const Inputs& in) {
    return success_using(in.items.at(0).value, {{"tokens", 10}});
  });
  GraphSpec spec;
  spec.add("one", agent);
  spec.add("two", agent, {"one"});
  auto graph = CompiledGraph::compile(spec);
  std::vector<RunHandle> limited;
  std::vector<RunHandle> free;
  for (int i = 0; i < 8; ++i) {
    limited.push_back(start_with(graph, with_budget({{"tokens", 10}})));
    free.push_back(start_with(graph, with_budget({})));
  }
  for (auto& run : limited) {
    wait_end(run);
    CHECK(run.budget_exhausted());
    CHECK_EQ(usage_of(run.usage(), "tokens"), 10.0);
    CHECK_EQ(status_of(run, graph, "two"), NodeStatus::Skipped);
  }
  for (auto& run : free) {
    wait_end(run);
    CHECK(!run.budget_exhausted());
    CHECK_EQ(usage_of(run.usage(), "tokens"), 20.0);
    CHECK_EQ(run.status(), RunStatus::Succeeded);
  }
}
