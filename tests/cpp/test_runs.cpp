// Runs of compiled graphs: data flow, parallelism, failure, cancellation, concurrency
// between runs, events, and the lifetime rules of the run/graph objects.
#include <pthread.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Long enough for a sanitizer build on a loaded 2-core machine; a healthy run takes
// milliseconds.
constexpr auto kRunTimeout = seconds(30);

RunHandle start(const std::shared_ptr<CompiledGraph>& graph, Payload input = {},
                bool record_events = false, std::shared_ptr<RunObserver> observer = {}) {
  RunOptions options;
  options.input = std::move(input);
  options.record_events = record_events ? EventKinds::all() : EventKinds{};
  options.observer = std::move(observer);
  return graph->start(std::move(options));
}

RunHandle run_to_end(const std::shared_ptr<CompiledGraph>& graph, Payload input = {}) {
  RunHandle run = start(graph, std::move(input));
  REQUIRE(run.wait_for(kRunTimeout));
  return run;
}

std::uint32_t index_of(const std::shared_ptr<CompiledGraph>& graph, const std::string& name) {
  const auto index = graph->plan().find(name);
  REQUIRE(index >= 0);
  return static_cast<std::uint32_t>(index);
}

NodeStatus node_status(const RunHandle& run, const std::shared_ptr<CompiledGraph>& graph,
                       const std::string& name) {
  return run.outcome(index_of(graph, name))->status;
}

Payload node_output(const RunHandle& run, const std::shared_ptr<CompiledGraph>& graph,
                    const std::string& name) {
  return run.outcome(index_of(graph, name))->output;
}

}  // namespace

// ---- single agents ------------------------------------------------------------------

TEST(run_inline_agent_completes_synchronously) {
  auto agent = inline_agent([](const Inputs& in) { return make(as_int(in.items[0].value) + 1); });
  GraphSpec spec;
  spec.add("inc", agent);
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(41));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK(run.done());
  CHECK(!run.failed_node());
  auto outputs = run.sink_outputs();
  REQUIRE_EQ(outputs.size(), std::size_t{1});
  CHECK_EQ(std::string(outputs[0].first), std::string("inc"));
  CHECK_EQ(as_int(outputs[0].second), 42);
  auto outcome = run.outcome(0);
  REQUIRE(outcome);
  CHECK_EQ(outcome->status, NodeStatus::Succeeded);
  CHECK(outcome->started >= 0.0);
  CHECK(outcome->finished >= outcome->started);
  CHECK(!run.outcome(1));
  CHECK_EQ(agent->calls(), 1);
  CHECK(run.elapsed() >= outcome->finished);
}

TEST(run_pooled_agent_completes_from_pool_thread) {
  auto agent = pooled_agent(milliseconds(20),
                            [](const Inputs& in) { return make(as_int(in.items[0].value) * 2); });
  GraphSpec spec;
  spec.add("double", agent);
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(21));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(node_output(run, graph, "double")), 42);
  CHECK(run.elapsed() >= 0.015);
  const double elapsed = run.elapsed();
  std::this_thread::sleep_for(milliseconds(5));
  CHECK_EQ(run.elapsed(), elapsed);  // frozen once the run ended
}

TEST(run_wait_for_times_out_then_succeeds) {
  GraphSpec spec;
  spec.add("slow", pooled_agent(milliseconds(200), [](const Inputs&) { return make(1); }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph);
  CHECK(!run.wait_for(milliseconds(10)));
  CHECK_EQ(run.status(), RunStatus::Running);
  CHECK(run.wait_for(kRunTimeout, milliseconds(1)));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  RunHandle copy = run;
  copy.wait();
  CHECK_EQ(copy.id(), run.id());
}

// ---- data flow ----------------------------------------------------------------------

TEST(run_chain_passes_data_along) {
  auto a = inline_agent(append("a"));
  auto b = pooled_agent(milliseconds(5), append("b"));
  auto c = inline_agent(append("c"));
  auto d = pooled_agent(milliseconds(1), append("d"));
  GraphSpec spec;
  spec.add("d", d, {"c"});
  spec.add("c", c, {"b"});
  spec.add("b", b, {"a"});
  spec.add("a", a);
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  auto outputs = run.sink_outputs();
  REQUIRE_EQ(outputs.size(), std::size_t{1});
  CHECK_EQ(as_str(outputs[0].second), std::string("in:a:b:c:d"));
  CHECK_EQ(as_str(node_output(run, graph, "b")), std::string("in:a:b"));

  auto seen_a = a->seen();
  REQUIRE_EQ(seen_a.size(), std::size_t{1});
  CHECK_EQ(seen_a[0].kind, Inputs::Kind::RunInput);
  CHECK_EQ(seen_a[0].names.at(0), std::string());
  auto seen_c = c->seen();
  REQUIRE_EQ(seen_c.size(), std::size_t{1});
  CHECK_EQ(seen_c[0].kind, Inputs::Kind::Single);
  REQUIRE_EQ(seen_c[0].names.size(), std::size_t{1});
  CHECK_EQ(seen_c[0].names[0], std::string("b"));
  CHECK_EQ(seen_c[0].run_id, run.id());
}

TEST(run_entries_get_the_run_input) {
  auto first = inline_agent([](const Inputs&) { return make(1); });
  auto second = pooled_agent(milliseconds(1), [](const Inputs&) { return make(2); });
  GraphSpec spec;
  spec.add("first", first);
  spec.add("second", second);
  auto graph = CompiledGraph::compile(spec);

  Payload input = make(std::string("the input"));
  auto context = std::make_shared<int>(99);
  RunOptions options;
  options.input = input;
  options.context = context;
  RunHandle run = graph->start(std::move(options));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  for (const auto& agent : {std::static_pointer_cast<TestAgent>(first),
                            std::static_pointer_cast<TestAgent>(second)}) {
    auto seen = agent->seen();
    REQUIRE_EQ(seen.size(), std::size_t{1});
    CHECK_EQ(seen[0].kind, Inputs::Kind::RunInput);
    REQUIRE_EQ(seen[0].values.size(), std::size_t{1});
    CHECK(seen[0].values[0] == input);  // the same object, not a copy
    CHECK(seen[0].context == context);
  }
  CHECK_EQ(run.sink_outputs().size(), std::size_t{2});
}

TEST(run_fan_out_and_join_in_declaration_order) {
  auto src = inline_agent([](const Inputs& in) { return in.items[0].value; });
  // Finish in the opposite order of `after` below, so an order taken from completion
  // time would show.
  auto x = pooled_agent(milliseconds(60), append("x"));
  auto y = pooled_agent(milliseconds(30), append("y"));
  auto z = pooled_agent(milliseconds(1), append("z"));
  auto join = inline_agent([](const Inputs& in) {
    std::string all;
    for (const auto& item : in.items) all += std::string(item.name) + "=" + as_str(item.value) + ";";
    return make(all);
  });
  GraphSpec spec;
  spec.add("src", src);
  spec.add("x", x, {"src"});
  spec.add("y", y, {"src"});
  spec.add("z", z, {"src"});
  spec.add("join", join, {"x", "z", "y"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(std::string("s")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  auto seen = join->seen();
  REQUIRE_EQ(seen.size(), std::size_t{1});
  CHECK_EQ(seen[0].kind, Inputs::Kind::Joined);
  REQUIRE_EQ(seen[0].names.size(), std::size_t{3});
  CHECK_EQ(seen[0].names[0], std::string("x"));
  CHECK_EQ(seen[0].names[1], std::string("z"));
  CHECK_EQ(seen[0].names[2], std::string("y"));
  CHECK_EQ(as_str(node_output(run, graph, "join")), std::string("x=s:x;z=s:z;y=s:y;"));
  CHECK_EQ(x->calls() + y->calls() + z->calls(), 3);
}

TEST(run_wide_fan_in_counts_every_predecessor) {
  constexpr int kWidth = 64;
  GraphSpec spec;
  std::vector<std::string> after;
  for (int i = 0; i < kWidth; ++i) {
    const std::string name = "in" + std::to_string(i);
    if (i % 2) {
      spec.add(name, inline_agent([i](const Inputs&) { return make(i); }));
    } else {
      spec.add(name, pooled_agent(milliseconds(i % 7), [i](const Inputs&) { return make(i); }));
    }
    after.push_back(name);
  }
  std::reverse(after.begin(), after.end());
  auto join = inline_agent([](const Inputs& in) {
    std::string order;
    for (const auto& item : in.items) order += std::to_string(as_int(item.value)) + ",";
    return make(order);
  });
  spec.add("join", join, after);
  auto graph = CompiledGraph::compile(spec);

  for (int repeat = 0; repeat < 5; ++repeat) {
    RunHandle run = run_to_end(graph);
    CHECK_EQ(run.status(), RunStatus::Succeeded);
    std::string expected;
    for (int i = kWidth - 1; i >= 0; --i) expected += std::to_string(i) + ",";
    CHECK_EQ(as_str(node_output(run, graph, "join")), expected);
  }
  CHECK_EQ(join->calls(), 5);
}

TEST(run_long_inline_chain) {
  constexpr int kLength = 300;
  GraphSpec spec;
  spec.add("n0", inline_agent([](const Inputs&) { return make(0); }));
  for (int i = 1; i < kLength; ++i) {
    spec.add("n" + std::to_string(i),
             inline_agent([](const Inputs& in) { return make(as_int(in.items[0].value) + 1); }),
             {"n" + std::to_string(i - 1)});
  }
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(run.sink_outputs().at(0).second), kLength - 1);
}

TEST(run_with_priorities) {
  GraphSpec spec;
  spec.add("root", inline_agent([](const Inputs&) { return make(0); }));
  spec.add("high", inline_agent([](const Inputs&) { return make(1); }), {"root"}, 10);
  spec.add("low", inline_agent([](const Inputs&) { return make(2); }), {"root"}, -5);
  spec.add("normal", pooled_agent(milliseconds(1), [](const Inputs&) { return make(3); }),
           {"root"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(run.sink_outputs().size(), std::size_t{3});
}

// ---- parallelism --------------------------------------------------------------------

TEST(run_fan_out_agents_run_in_parallel) {
  constexpr int kAgents = 16;
  constexpr auto kSleep = milliseconds(50);
  GraphSpec spec;
  spec.add("src", inline_agent([](const Inputs&) { return make(0); }));
  std::vector<std::string> names;
  for (int i = 0; i < kAgents; ++i) {
    names.push_back("sleep" + std::to_string(i));
    spec.add(names.back(), pooled_agent(kSleep, [i](const Inputs&) { return make(i); }), {"src"});
  }
  spec.add("sink", inline_agent([](const Inputs& in) { return make(static_cast<int>(in.items.size())); }),
           names);
  auto graph = CompiledGraph::compile(spec);

  // Warm the pool once so thread start-up cost does not count against the bound.
  (void)run_to_end(graph);
  const auto begin = std::chrono::steady_clock::now();
  RunHandle run = run_to_end(graph);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count();
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(node_output(run, graph, "sink")), kAgents);
  // Serial would be 16 * 50ms = 800ms.
  CHECK(wall < 0.4);
  CHECK(run.elapsed() < 0.4);
  if (wall >= 0.4) std::printf("    fan-out of %d took %.3fs\n", kAgents, wall);
}

// ---- failure ------------------------------------------------------------------------

TEST(run_failure_stops_downstream_and_keeps_finished_outputs) {
  auto a = inline_agent([](const Inputs&) { return make(std::string("A")); });
  auto b = failing_agent(milliseconds(10), "boom");
  auto c = inline_agent(append("c"));
  auto d = pooled_agent(milliseconds(300), append("d"));
  auto e = inline_agent(append("e"));
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("a", a);
  spec.add("b", b, {"a"});
  spec.add("c", c, {"b"});
  spec.add("d", d, {"a"});
  spec.add("e", e, {"d"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = start(graph, {}, false, observer);
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Failed);
  REQUIRE(run.failed_node());
  CHECK_EQ(*run.failed_node(), index_of(graph, "b"));
  CHECK_EQ(node_status(run, graph, "a"), NodeStatus::Succeeded);
  CHECK_EQ(as_str(node_output(run, graph, "a")), std::string("A"));
  auto failed = run.outcome(index_of(graph, "b"));
  CHECK_EQ(failed->status, NodeStatus::Failed);
  CHECK_EQ(failed->failure.message, std::string("boom"));
  CHECK_EQ(as_str(failed->failure.error), std::string("error object"));
  CHECK(failed->finished >= failed->started);
  CHECK_EQ(node_status(run, graph, "c"), NodeStatus::Pending);
  CHECK_EQ(run.outcome(index_of(graph, "c"))->started, -1.0);

  // d was still sleeping when b failed: its late result must be discarded, and e, which
  // waits on it, must never start.
  CHECK(eventually([&] { return node_status(run, graph, "d") == NodeStatus::Cancelled; }));
  CHECK(d->saw_run_ended());
  CHECK(!node_output(run, graph, "d"));
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(node_status(run, graph, "e"), NodeStatus::Pending);
  CHECK_EQ(c->calls(), 0);
  CHECK_EQ(e->calls(), 0);
  CHECK(run.sink_outputs().empty());
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK(eventually([&] { return observer->calls() >= 1; }));
  CHECK_EQ(observer->calls(), 1);
  CHECK_EQ(observer->last_status(), RunStatus::Failed);
}

TEST(run_inline_failure) {
  auto bad = lambda_agent([](Invocation inv) { inv.completion.fail(Failure{"inline bad", {}}); });
  auto after = inline_agent(append("after"));
  GraphSpec spec;
  spec.add("bad", bad);
  spec.add("after", after, {"bad"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->failure.message, std::string("inline bad"));
  CHECK_EQ(node_status(run, graph, "after"), NodeStatus::Pending);
  CHECK_EQ(after->calls(), 0);
}

TEST(run_dropped_completion_fails_the_node) {
  // Inline: the Invocation dies at the end of invoke().
  {
    GraphSpec spec;
    spec.add("forgetful", lambda_agent([](Invocation) {}));
    auto graph = CompiledGraph::compile(spec);
    RunHandle run = run_to_end(graph);
    CHECK_EQ(run.status(), RunStatus::Failed);
    CHECK_EQ(run.outcome(0)->status, NodeStatus::Failed);
    CHECK(contains(run.outcome(0)->failure.message, "dropped"));
    CHECK_EQ(run.failed_node().value_or(99), 0u);
  }
  // On the pool: the task holding it is destroyed without resolving.
  {
    GraphSpec spec;
    spec.add("lost", lambda_agent([](Invocation inv) {
               auto shared = std::make_shared<Invocation>(std::move(inv));
               Runtime::instance().pool().submit([shared] {
                 std::this_thread::sleep_for(milliseconds(5));
               });
             }));
    auto graph = CompiledGraph::compile(spec);
    RunHandle run = run_to_end(graph);
    CHECK_EQ(run.status(), RunStatus::Failed);
    CHECK(contains(run.outcome(0)->failure.message, "dropped"));
  }
}

TEST(run_throwing_invoke_fails_the_node) {
  auto thrower = lambda_agent([](Invocation) { throw std::runtime_error("kaboom"); });
  auto after = inline_agent(append("after"));
  GraphSpec spec;
  spec.add("thrower", thrower);
  spec.add("after", after, {"thrower"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(node_status(run, graph, "thrower"), NodeStatus::Failed);
  CHECK_EQ(node_status(run, graph, "after"), NodeStatus::Pending);
  CHECK_EQ(after->calls(), 0);
  // The graph is still usable afterwards.
  RunHandle again = run_to_end(graph);
  CHECK_EQ(again.status(), RunStatus::Failed);
  CHECK_EQ(thrower->calls(), 2);
}

TEST(run_throw_after_resolving_keeps_the_result) {
  GraphSpec spec;
  spec.add("ok_then_throw", lambda_agent([](Invocation inv) {
             inv.completion.succeed(make(5));
             throw std::runtime_error("late");
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(run.sink_outputs().at(0).second), 5);
}

TEST(run_completion_resolves_exactly_once) {
  std::atomic<int> second_throws{0};
  std::atomic<bool> resolved_flag{false};
  GraphSpec spec;
  spec.add("twice", lambda_agent([&](Invocation inv) {
             inv.completion.succeed(make(1));
             resolved_flag.store(inv.completion.resolved());
             try {
               inv.completion.succeed(make(2));
             } catch (const EngineError&) {
               second_throws.fetch_add(1);
             }
             try {
               inv.completion.fail(Failure{"no", {}});
             } catch (const EngineError&) {
               second_throws.fetch_add(1);
             }
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(run.sink_outputs().at(0).second), 1);
  // The run ended inside the first succeed(); the agent is still busy with the rest.
  CHECK(eventually([&] { return second_throws.load() == 2; }));
  CHECK(resolved_flag.load());
}

// ---- cancellation -------------------------------------------------------------------

TEST(run_cancel_discards_late_results) {
  // Long enough that the cancel below lands while the agent sleeps even on a loaded
  // machine: under ASan with 8 workers on 2 cores, seeing the node running once took
  // most of a 300 ms sleep, and the agent woke before the cancel was complete.
  auto slow = pooled_agent(milliseconds(2000), append("slow"));
  auto next = inline_agent(append("next"));
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("slow", slow);
  spec.add("next", next, {"slow"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = start(graph, make(std::string("in")), false, observer);
  REQUIRE(eventually([&] { return node_status(run, graph, "slow") == NodeStatus::Running; }));
  CHECK(run.cancel());
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  CHECK(!run.cancel());  // already ended
  CHECK(run.done());
  // The observer runs on the thread that ended the run: this one.
  CHECK_EQ(observer->calls(), 1);
  CHECK_EQ(observer->last_status(), RunStatus::Cancelled);
  CHECK_EQ(observer->last_run(), run.id());
  CHECK(run.elapsed() < 2.0);
  CHECK_EQ(node_status(run, graph, "slow"), NodeStatus::Running);

  CHECK(eventually([&] { return node_status(run, graph, "slow") == NodeStatus::Cancelled; }));
  CHECK(slow->saw_run_ended());
  auto outcome = run.outcome(index_of(graph, "slow"));
  CHECK(!outcome->output);
  CHECK(outcome->finished >= outcome->started);
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(node_status(run, graph, "next"), NodeStatus::Pending);
  CHECK_EQ(next->calls(), 0);
  CHECK(run.sink_outputs().empty());
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  CHECK_EQ(observer->calls(), 1);
  CHECK(!run.failed_node());
}

TEST(run_cancel_after_success_is_a_no_op) {
  GraphSpec spec;
  spec.add("quick", inline_agent([](const Inputs&) { return make(1); }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK(!run.cancel());
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(run.sink_outputs().size(), std::size_t{1});
}

TEST(run_when_ended_calls_back_once_at_the_end_or_at_once_after_it) {
  // An agent that holds its completion until told to resolve: the run stays in flight.
  std::mutex mutex;
  std::optional<Completion> held;
  GraphSpec spec;
  spec.add("held", lambda_agent([&](Invocation inv) {
             std::lock_guard<std::mutex> lock(mutex);
             held.emplace(std::move(inv.completion));
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph);
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return held.has_value();
  }));
  std::atomic<int> calls{0};
  std::atomic<bool> saw_done{false};
  run.when_ended([&] {
    saw_done = run.done();
    ++calls;
  });
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(calls.load(), 0);  // not while the run is in flight
  {
    std::lock_guard<std::mutex> lock(mutex);
    held->resolve(Outcome::success(make(7)));
  }
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(calls.load(), 1);
  CHECK(saw_done.load());  // called once the run's end is visible
  int late = 0;
  run.when_ended([&] { ++late; });  // the run has ended: called at once, on this thread
  CHECK_EQ(late, 1);
  CHECK_EQ(calls.load(), 1);
}

TEST(run_agent_reports_cancelled) {
  auto observer = std::make_shared<CountingObserver>();
  auto after = inline_agent(append("after"));
  GraphSpec spec;
  spec.add("quits", lambda_agent([](Invocation inv) { inv.completion.cancelled(); }));
  spec.add("after", after, {"quits"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph, {}, true, observer);
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  CHECK_EQ(node_status(run, graph, "quits"), NodeStatus::Cancelled);
  CHECK_EQ(node_status(run, graph, "after"), NodeStatus::Pending);
  auto events = drain_events(run);
  REQUIRE_EQ(events.size(), std::size_t{2});
  CHECK_EQ(events[0].kind, EventKind::Start);
  CHECK_EQ(events[1].kind, EventKind::Cancel);
  CHECK(eventually([&] { return observer->calls() == 1; }));
  CHECK_EQ(observer->last_status(), RunStatus::Cancelled);
}

TEST(run_cancel_many_in_flight) {
  GraphSpec spec;
  spec.add("a", pooled_agent(milliseconds(30), append("a")));
  spec.add("b", pooled_agent(milliseconds(30), append("b")), {"a"});
  spec.add("c", inline_agent(append("c")), {"b"});
  auto graph = CompiledGraph::compile(spec);
  std::vector<RunHandle> runs;
  for (int i = 0; i < 40; ++i) runs.push_back(start(graph, make(std::to_string(i))));
  // Cancel at staggered moments so some runs end before, during and after agents.
  for (std::size_t i = 0; i < runs.size(); ++i) {
    if (i % 4 == 0) std::this_thread::sleep_for(milliseconds(3));
    runs[i].cancel();
  }
  for (auto& run : runs) {
    REQUIRE(run.wait_for(kRunTimeout));
    CHECK(run.status() == RunStatus::Cancelled || run.status() == RunStatus::Succeeded);
  }
  // Late results land after cancel; each node ends in a final state, none stays Running.
  for (auto& run : runs) {
    CHECK(eventually([&] {
      for (const auto& outcome : run.outcomes()) {
        if (outcome.status == NodeStatus::Running) return false;
      }
      return true;
    }));
  }
}

// ---- concurrent runs ----------------------------------------------------------------

TEST(run_many_concurrent_runs_are_isolated) {
  constexpr int kThreads = 4;
  constexpr int kRunsPerThread = 50;
  // Each agent checks that the run context it sees belongs to the same run as its data.
  std::atomic<int> mismatches{0};
  auto a = lambda_agent([&](Invocation inv) {
    const int i = as_int(inv.inputs.items[0].value);
    if (!inv.run_context || *static_cast<int*>(inv.run_context.get()) != i) mismatches++;
    inv.completion.succeed(make(i * 10));
  });
  auto b = pooled_agent(milliseconds(1), [](const Inputs& in) { return make(as_int(in.items[0].value) + 1); });
  auto c = inline_agent([](const Inputs& in) { return make(as_int(in.items[0].value) + 2); });
  auto d = inline_agent([](const Inputs& in) {
    return make(std::to_string(as_int(in.items.at(0).value)) + "|" +
                std::to_string(as_int(in.items.at(1).value)));
  });
  GraphSpec spec;
  spec.add("a", a);
  spec.add("b", b, {"a"});
  spec.add("c", c, {"a"});
  spec.add("d", d, {"b", "c"});
  auto graph = CompiledGraph::compile(spec);

  std::vector<std::vector<RunHandle>> runs(kThreads);
  std::vector<std::thread> starters;
  for (int t = 0; t < kThreads; ++t) {
    starters.emplace_back([&, t] {
      for (int k = 0; k < kRunsPerThread; ++k) {
        const int i = t * kRunsPerThread + k;
        RunOptions options;
        options.input = make(i);
        options.context = std::make_shared<int>(i);
        runs[t].push_back(graph->start(std::move(options)));
      }
    });
  }
  for (auto& thread : starters) thread.join();

  std::vector<std::uint64_t> ids;
  for (int t = 0; t < kThreads; ++t) {
    for (int k = 0; k < kRunsPerThread; ++k) {
      RunHandle& run = runs[t][k];
      const int i = t * kRunsPerThread + k;
      REQUIRE(run.wait_for(kRunTimeout));
      CHECK_EQ(run.status(), RunStatus::Succeeded);
      auto outputs = run.sink_outputs();
      REQUIRE_EQ(outputs.size(), std::size_t{1});
      CHECK_EQ(as_str(outputs[0].second),
               std::to_string(i * 10 + 1) + "|" + std::to_string(i * 10 + 2));
      ids.push_back(run.id());
    }
  }
  std::sort(ids.begin(), ids.end());
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
  CHECK_EQ(mismatches.load(), 0);
  CHECK_EQ(a->calls(), kThreads * kRunsPerThread);
  CHECK_EQ(d->calls(), kThreads * kRunsPerThread);
  for (const auto& seen : d->seen()) {
    // Every join saw b's and c's outputs of its own run: both derive from the same i.
    CHECK_EQ(as_int(seen.values.at(0)) + 1, as_int(seen.values.at(1)));
  }
}

TEST(run_outcomes_readable_while_running) {
  // Reads every slot while agents on other threads write them; meaningful under TSan.
  GraphSpec spec;
  spec.add("n0", pooled_agent(milliseconds(2), append("0")));
  for (int i = 1; i < 6; ++i) {
    auto body = append(std::to_string(i));
    if (i % 2) {
      spec.add("n" + std::to_string(i), inline_agent(body), {"n" + std::to_string(i - 1)});
    } else {
      spec.add("n" + std::to_string(i), pooled_agent(milliseconds(2), body),
               {"n" + std::to_string(i - 1)});
    }
  }
  auto graph = CompiledGraph::compile(spec);
  for (int repeat = 0; repeat < 5; ++repeat) {
    RunHandle run = start(graph, make(std::string("x")), true);
    std::vector<Event> events;
    int polls = 0;
    while (!run.done()) {
      const std::string trace = run.trace_json();
      CHECK(json_valid(trace));
      for (const auto& outcome : run.outcomes()) {
        if (outcome.status == NodeStatus::Succeeded) CHECK(outcome.output != nullptr);
      }
      run.next_events(events, milliseconds(1));
      (void)run.sink_outputs();
      (void)run.elapsed();
      ++polls;
    }
    REQUIRE(run.wait_for(kRunTimeout));
    CHECK_EQ(run.status(), RunStatus::Succeeded);
    CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("x:0:1:2:3:4:5"));
    CHECK(polls > 0);
  }
}

// ---- events, observer, trace --------------------------------------------------------

TEST(run_records_events_in_order) {
  auto a = inline_agent(append("a"));
  auto b = pooled_agent(milliseconds(5), append("b"));
  auto c = pooled_agent(milliseconds(1), append("c"));
  auto j = inline_agent([](const Inputs& in) { return make(static_cast<int>(in.items.size())); });
  GraphSpec spec;
  spec.add("a", a, {}, 2);
  spec.add("b", b, {"a"});
  spec.add("c", c, {"a"});
  spec.add("j", j, {"b", "c"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = start(graph, make(std::string("in")), true);
  auto events = drain_events(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  REQUIRE_EQ(events.size(), std::size_t{8});

  // Timestamps are monotonic per agent; across agents finishing at the same moment on
  // different threads the queue order may differ from the clock by a hair.
  std::vector<double> last(4, 0.0);
  std::vector<int> start_at(4, -1), finish_at(4, -1);
  for (std::size_t k = 0; k < events.size(); ++k) {
    const Event& event = events[k];
    REQUIRE(event.node < 4);
    CHECK_EQ(event.run_id, run.id());
    CHECK(event.seconds >= last[event.node]);
    last[event.node] = event.seconds;
    CHECK_EQ(event.agent, graph->plan().nodes().at(event.node).name);
    if (event.kind == EventKind::Start) {
      CHECK_EQ(start_at[event.node], -1);
      start_at[event.node] = static_cast<int>(k);
      CHECK(!event.payload);
    } else {
      CHECK_EQ(event.kind, EventKind::Finish);
      CHECK_EQ(finish_at[event.node], -1);
      finish_at[event.node] = static_cast<int>(k);
      CHECK(event.payload == run.outcome(event.node)->output);
    }
  }
  const auto ia = index_of(graph, "a"), ib = index_of(graph, "b"), ic = index_of(graph, "c"),
             ij = index_of(graph, "j");
  for (std::uint32_t n : {ia, ib, ic, ij}) CHECK(start_at[n] >= 0 && start_at[n] < finish_at[n]);
  CHECK_EQ(start_at[ia], 0);
  CHECK(finish_at[ia] < start_at[ib] && finish_at[ia] < start_at[ic]);
  CHECK(finish_at[ib] < start_at[ij] && finish_at[ic] < start_at[ij]);
  CHECK_EQ(finish_at[ij], 7);
  CHECK_EQ(events[0].priority, 2);

  std::vector<Event> more;
  CHECK(!run.next_events(more, milliseconds(1)));
  CHECK(more.empty());
}

TEST(run_records_error_event) {
  GraphSpec spec;
  spec.add("ok", inline_agent([](const Inputs&) { return make(1); }));
  spec.add("bad", failing_agent(milliseconds(1), "it broke"), {"ok"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph, {}, true);
  auto events = drain_events(run);
  CHECK_EQ(run.status(), RunStatus::Failed);
  REQUIRE_EQ(events.size(), std::size_t{4});
  CHECK_EQ(events[0].kind, EventKind::Start);
  CHECK_EQ(events[1].kind, EventKind::Finish);
  CHECK_EQ(events[2].kind, EventKind::Start);
  CHECK_EQ(events[2].agent, std::string("bad"));
  CHECK_EQ(events[3].kind, EventKind::Error);
  CHECK_EQ(events[3].message, std::string("it broke"));
  CHECK_EQ(as_str(events[3].payload), std::string("error object"));
}

TEST(run_next_events_gathers_a_fast_run_into_one_batch) {
  // With a gather window far longer than the run, the events of a run of quick agents come
  // out together, as soon as the run ends (the end wakes the reader, not the window).
  GraphSpec spec;
  spec.add("a", inline_agent(append("a")));
  spec.add("b", pooled_agent(milliseconds(2), append("b")), {"a"});
  spec.add("c", inline_agent(append("c")), {"b"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph, make(std::string("x")), true);
  std::vector<Event> events;
  const auto before = std::chrono::steady_clock::now();
  const bool more = run.next_events(events, kRunTimeout, kRunTimeout, milliseconds(1));
  CHECK(std::chrono::steady_clock::now() - before < kRunTimeout / 2);
  CHECK(!more);  // ended, and every event taken
  CHECK(run.done());
  REQUIRE_EQ(events.size(), std::size_t{6});
  CHECK_EQ(events.front().kind, EventKind::Start);
  CHECK_EQ(events.back().kind, EventKind::Finish);
  CHECK_EQ(events.back().agent, std::string("c"));
  for (std::size_t k = 1; k < events.size(); ++k) CHECK(events[k].seconds >= events[k - 1].seconds);
}

TEST(run_next_events_gather_bounds_how_long_events_wait) {
  // A run still going when the window closes hands over what it has: the gather window
  // bounds the delay of an event; it does not hold events back until the run ends.
  Gate release;
  GraphSpec spec;
  spec.add("a", inline_agent(append("a")));
  spec.add("slow", lambda_agent([&release](Invocation invocation) {
             auto shared = std::make_shared<Invocation>(std::move(invocation));
             Runtime::instance().pool().submit([shared, &release] {
               release.wait();
               shared->completion.succeed(make(std::string("done")));
             });
           }),
           {"a"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph, make(std::string("x")), true);
  std::vector<Event> events;
  // Until slow has started: a's start and finish, and slow's start.
  while (events.size() < 3) {
    REQUIRE(run.next_events(events, kRunTimeout, milliseconds(20), milliseconds(1)));
  }
  CHECK(!run.done());
  CHECK_EQ(events.size(), std::size_t{3});
  CHECK_EQ(events[2].kind, EventKind::Start);
  CHECK_EQ(events[2].agent, std::string("slow"));
  release.open();
  auto rest = drain_events(run);
  REQUIRE_EQ(rest.size(), std::size_t{1});
  CHECK_EQ(rest[0].kind, EventKind::Finish);
  CHECK_EQ(as_str(rest[0].payload), std::string("done"));
}

TEST(run_events_of_child_runs_are_timed_from_the_root_run) {
  // A child run's events carry times since its root run started, like the root's own.
  GraphSpec inner;
  inner.add("x", pooled_agent(milliseconds(5), append("x")));
  auto child = CompiledGraph::compile(inner);
  GraphSpec outer;
  outer.add("wait", pooled_agent(milliseconds(20), append("w")));
  outer.add("call", lambda_agent([child](Invocation invocation) {
              invocation.completion.delegate(child, invocation.inputs.items.at(0).value);
            }),
            {"wait"});
  auto graph = CompiledGraph::compile(outer);
  RunHandle run = start(graph, make(std::string("in")), true);
  auto events = drain_events(run);
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  double finished_wait = -1.0;
  for (const Event& event : events) {
    if (event.agent == "wait" && event.kind == EventKind::Finish) finished_wait = event.seconds;
    if (event.agent == "call/x") {
      CHECK(finished_wait >= 0.015);  // the child started after "wait" slept
      CHECK(event.seconds >= finished_wait);
      CHECK(event.seconds <= run.elapsed());
    }
  }
  CHECK(finished_wait >= 0.015);
}

TEST(run_next_events_requires_recording) {
  GraphSpec spec;
  spec.add("a", inline_agent([](const Inputs&) { return make(1); }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  std::vector<Event> events;
  CHECK_THROWS(EngineError, run.next_events(events, milliseconds(1)));
}

TEST(run_observer_called_exactly_once) {
  GraphSpec spec;
  spec.add("a", inline_agent(append("a")));
  spec.add("b", pooled_agent(milliseconds(2), append("b")), {"a"});
  spec.add("c", pooled_agent(milliseconds(2), append("c")), {"a"});
  auto graph = CompiledGraph::compile(spec);
  std::vector<std::shared_ptr<CountingObserver>> observers;
  std::vector<RunHandle> runs;
  for (int i = 0; i < 20; ++i) {
    observers.push_back(std::make_shared<CountingObserver>());
    runs.push_back(start(graph, make(std::string("x")), false, observers.back()));
  }
  for (std::size_t i = 0; i < runs.size(); ++i) {
    REQUIRE(runs[i].wait_for(kRunTimeout));
    CHECK(eventually([&] { return observers[i]->calls() >= 1; }));
    CHECK_EQ(observers[i]->last_status(), RunStatus::Succeeded);
    CHECK_EQ(observers[i]->last_run(), runs[i].id());
    runs[i].cancel();
  }
  std::this_thread::sleep_for(milliseconds(20));
  for (const auto& observer : observers) CHECK_EQ(observer->calls(), 1);
}

TEST(run_trace_json) {
  GraphSpec spec;
  spec.add("fetch", inline_agent([](const Inputs&) { return make(std::string("page")); }));
  spec.add("parse", failing_agent(milliseconds(1), "bad \"html\"\n"), {"fetch"});
  spec.add("store", inline_agent(append("store")), {"parse"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  const std::string trace = run.trace_json();
  CHECK(json_valid(trace));
  CHECK(contains(trace, "\"run_id\":" + std::to_string(run.id())));
  CHECK(contains(trace, R"("status":"failed")"));
  CHECK(contains(trace, R"("failed":"parse")"));
  CHECK(contains(trace, R"("name":"fetch")"));
  CHECK(contains(trace, R"("status":"succeeded")"));
  CHECK(contains(trace, R"("name":"store")"));
  CHECK(contains(trace, R"("status":"not_started")"));
  CHECK(contains(trace, R"("error":"bad \"html\"\n")"));
  CHECK(contains(trace, "\"elapsed\":"));

  GraphSpec ok_spec;
  ok_spec.add("only", inline_agent([](const Inputs&) { return make(1); }));
  auto ok_graph = CompiledGraph::compile(ok_spec);
  RunHandle ok = run_to_end(ok_graph);
  const std::string ok_trace = ok.trace_json();
  CHECK(json_valid(ok_trace));
  CHECK(!contains(ok_trace, "\"failed\""));
  CHECK(contains(ok_trace, R"("status":"succeeded")"));
}

// ---- lifetimes ----------------------------------------------------------------------

TEST(run_outlives_its_compiled_graph) {
  auto slow = pooled_agent(milliseconds(100), append("slow"));
  std::weak_ptr<Agent> watch = slow;
  std::vector<RunHandle> runs;
  {
    GraphSpec spec;
    spec.add("slow", slow);
    spec.add("after", inline_agent(append("after")), {"slow"});
    auto graph = CompiledGraph::compile(spec);
    for (int i = 0; i < 10; ++i) runs.push_back(start(graph, make(std::to_string(i))));
  }
  slow.reset();
  CHECK(!watch.expired());  // the runs keep the plan alive
  for (int i = 0; i < 10; ++i) {
    REQUIRE(runs[i].wait_for(kRunTimeout));
    CHECK_EQ(runs[i].status(), RunStatus::Succeeded);
    CHECK_EQ(as_str(runs[i].sink_outputs().at(0).second),
             std::to_string(i) + ":slow:after");
  }
  runs.clear();
  // Once the last run lets go, the flow graph and the plan (with its agents) are freed.
  CHECK(eventually([&] { return watch.expired(); }));
}

TEST(run_graph_freed_from_inside_a_tbb_task) {
  // With inline agents and no handle kept, the last reference to the run, and so to the
  // graph, dies inside one of the graph's own tasks; its destruction must not deadlock.
  auto observer = std::make_shared<CountingObserver>();
  std::weak_ptr<Agent> watch;
  constexpr int kRuns = 20;
  {
    auto first = inline_agent(append("1"));
    watch = first;
    GraphSpec spec;
    spec.add("first", first);
    spec.add("second", inline_agent(append("2")), {"first"});
    spec.add("third", inline_agent(append("3")), {"first"});
    auto graph = CompiledGraph::compile(spec);
    for (int i = 0; i < kRuns; ++i) (void)start(graph, make(std::string("x")), false, observer);
  }
  CHECK(eventually([&] { return observer->calls() == kRuns; }));
  CHECK_EQ(observer->last_status(), RunStatus::Succeeded);
  CHECK(eventually([&] { return watch.expired(); }));
}

TEST(run_graph_freed_soon_after_it_is_dropped) {
  // Dropping the last reference never waits (the flow graph's destructor does, so it runs
  // on the runtime's reaper thread), yet the graph, its plan and its agents are released
  // promptly rather than at some later drop or at exit.
  auto agent = inline_agent([](const Inputs&) { return make(1); });
  std::weak_ptr<Agent> watch = agent;
  GraphSpec spec;
  spec.add("never_run", agent);
  auto graph = CompiledGraph::compile(spec);
  agent.reset();
  spec.nodes.clear();
  REQUIRE(!watch.expired());
  graph.reset();
  CHECK(eventually([&] { return watch.expired(); }));
}

TEST(run_runtime_settles) {
  Runtime& runtime = Runtime::instance();
  CHECK(runtime.accepting());
  CHECK(eventually([&] { return runtime.live_runs() == 0; }));
  CHECK(eventually([&] { return runtime.inflight_invocations() == 0; }));
  const std::string version = Runtime::tbb_runtime_version();
  CHECK(version.rfind("20", 0) == 0);
  CHECK(Runtime::tbb_runtime_interface_version() >= Runtime::tbb_compiled_interface_version());
}

// ---- routing, join modes, errors that do not end the run, delegation ----------------
// These exercise the engine paths added after the core (skips, child runs); the checks
// stick to what graph_spec.hpp and agent.hpp document.

TEST(run_router_skips_unchosen_successors) {
  auto router = lambda_agent([](Invocation inv) {
    inv.completion.succeed_routed(make(std::string("r")), {"yes"});
  });
  auto yes = pooled_agent(milliseconds(2), append("yes"));
  auto no = inline_agent(append("no"));
  auto after_no = inline_agent(append("after_no"));
  GraphSpec spec;
  spec.add("router", router);
  spec.add("yes", yes, {"router"});
  spec.add("no", no, {"router"});
  spec.add("after_no", after_no, {"no"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(node_status(run, graph, "yes"), NodeStatus::Succeeded);
  CHECK_EQ(as_str(node_output(run, graph, "yes")), std::string("r:yes"));
  CHECK_EQ(node_status(run, graph, "no"), NodeStatus::Skipped);
  CHECK_EQ(node_status(run, graph, "after_no"), NodeStatus::Skipped);
  CHECK_EQ(no->calls() + after_no->calls(), 0);
  auto routed = run.outcome(index_of(graph, "router"));
  REQUIRE_EQ(routed->routes.size(), std::size_t{1});
  CHECK_EQ(routed->routes[0], std::string("yes"));
}

TEST(run_router_to_unknown_successor_fails) {
  GraphSpec spec;
  spec.add("router", lambda_agent([](Invocation inv) {
             inv.completion.succeed_routed(make(1), {"nowhere"});
           }));
  spec.add("next", inline_agent(append("next")), {"router"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto outcome = run.outcome(index_of(graph, "router"));
  CHECK_EQ(outcome->status, NodeStatus::Failed);
  CHECK(contains(outcome->failure.message, "nowhere"));
}

TEST(run_join_any_takes_the_first_delivery) {
  auto slow = pooled_agent(milliseconds(300), append("slow"));
  auto fast = pooled_agent(milliseconds(1), append("fast"));
  auto first = inline_agent(append("first"));
  GraphSpec spec;
  spec.add("slow", slow);
  spec.add("fast", fast);
  spec.add("first", first, {"slow", "fast"}).join = JoinMode::Any;
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(node_output(run, graph, "first")), std::string("in:fast:first"));
  auto seen = first->seen();
  REQUIRE_EQ(seen.size(), std::size_t{1});
  // With several predecessors the winner arrives by name, so the agent knows which.
  CHECK_EQ(seen[0].kind, Inputs::Kind::Joined);
  REQUIRE_EQ(seen[0].names.size(), std::size_t{1});
  CHECK_EQ(seen[0].names[0], std::string("fast"));
  // The loser has nothing left to feed once the only sink resolved.
  CHECK(run.elapsed() < 0.3);
  CHECK(eventually([&] { return node_status(run, graph, "slow") == NodeStatus::Cancelled; }));
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(first->calls(), 1);
}

TEST(run_continue_on_error_and_join_modes) {
  auto ok = pooled_agent(milliseconds(2), append("ok"));
  auto bad = failing_agent(milliseconds(5), "bad failed");
  auto all = inline_agent(append("all"));
  auto available = inline_agent([](const Inputs& in) {
    return make(static_cast<int>(in.items.size()));
  });
  auto settled = inline_agent([](const Inputs& in) {
    std::string text;
    for (const auto& item : in.items) {
      text += std::string(item.name) + (item.failed ? "!" : "=") + as_str(item.value) + ";";
    }
    return make(text);
  });
  GraphSpec spec;
  spec.on_error = ErrorMode::Continue;
  spec.add("ok", ok);
  spec.add("bad", bad);
  spec.add("all", all, {"ok", "bad"});
  spec.add("available", available, {"ok", "bad"}).join = JoinMode::Available;
  spec.add("settled", settled, {"ok", "bad"}).join = JoinMode::Settled;
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = run_to_end(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(node_status(run, graph, "bad"), NodeStatus::Failed);
  CHECK_EQ(node_status(run, graph, "all"), NodeStatus::Skipped);
  CHECK_EQ(all->calls(), 0);
  CHECK_EQ(as_int(node_output(run, graph, "available")), 1);
  CHECK_EQ(as_str(node_output(run, graph, "settled")),
           std::string("ok=in:ok;bad!error object;"));
  CHECK_EQ(run.sink_outputs().size(), std::size_t{2});
}

TEST(run_continue_on_error_with_no_output_fails_the_run) {
  auto bad = failing_agent(milliseconds(1), "nothing works");
  auto next = inline_agent(append("next"));
  GraphSpec spec;
  spec.add("bad", bad).on_error = ErrorMode::Continue;
  spec.add("next", next, {"bad"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(node_status(run, graph, "next"), NodeStatus::Skipped);
  REQUIRE(run.failed_node());
  CHECK_EQ(*run.failed_node(), index_of(graph, "bad"));
}

namespace {
std::shared_ptr<CompiledGraph> child_graph(milliseconds delay) {
  GraphSpec spec;
  spec.add("c1", pooled_agent(delay, append("c1")));
  spec.add("c2", inline_agent(append("c2")), {"c1"});
  return CompiledGraph::compile(spec);
}
}  // namespace

TEST(run_delegation_runs_a_child_graph) {
  auto child = child_graph(milliseconds(2));
  auto parent_agent = lambda_agent([child](Invocation inv) {
    inv.completion.delegate(child, make(as_str(inv.inputs.items.at(0).value) + ":d"));
  });
  GraphSpec spec;
  spec.add("d", parent_agent);
  spec.add("after", inline_agent(append("after")), {"d"});
  auto graph = CompiledGraph::compile(spec);

  RunHandle run = start(graph, make(std::string("in")), true);
  auto events = drain_events(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(node_output(run, graph, "after")), std::string("in:d:c1:c2:after"));
  // The child's events stream into the parent's queue under "d/".
  std::vector<std::string> names;
  for (const auto& event : events) {
    if (event.kind == EventKind::Start) names.push_back(event.agent);
  }
  CHECK(std::find(names.begin(), names.end(), "d/c1") != names.end());
  CHECK(std::find(names.begin(), names.end(), "d/c2") != names.end());
}

TEST(run_delegation_with_then) {
  auto child = child_graph(milliseconds(1));
  auto then = inline_agent(append("then"));
  GraphSpec spec;
  spec.add("d", lambda_agent([child, then](Invocation inv) {
             inv.completion.delegate(child, inv.inputs.items.at(0).value, then);
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph, make(std::string("x")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("x:c1:c2:then"));
  CHECK_EQ(then->calls(), 1);
}

TEST(run_cancel_reaches_delegated_child) {
  auto child = child_graph(milliseconds(300));
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("d", lambda_agent([child](Invocation inv) {
             inv.completion.delegate(child, make(std::string("x")));
           }));
  auto graph = CompiledGraph::compile(spec);
  RunOptions options;
  options.context_observer = observer;  // told about the child run too
  RunHandle run = graph->start(std::move(options));
  REQUIRE(eventually([&] { return Runtime::instance().live_runs() >= 2; }));
  std::this_thread::sleep_for(milliseconds(20));
  CHECK(run.cancel());
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  // Parent and child each reported once, both cancelled.
  CHECK(eventually([&] { return observer->calls() == 2; }));
  CHECK_EQ(observer->last_status(), RunStatus::Cancelled);
  CHECK(eventually([&] { return node_status(run, graph, "d") != NodeStatus::Running; }));
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(observer->calls(), 2);
}

namespace {
// Counts the events it is told of (one per batch: an event into an empty queue).
class EventCounter final : public RunObserver {
 public:
  void on_run_finished(const RunHandle&) override {}
  void on_event_recorded(std::uint64_t) override { told_.fetch_add(1); }
  int told() const { return told_.load(); }

 private:
  std::atomic<int> told_{0};
};
}  // namespace

// A context observer hears of events only for a run started with announce_events (an
// astream's, read on its loop); a run read by next_events alone wakes nobody per batch.
TEST(run_announces_events_only_when_asked) {
  GraphSpec spec;
  spec.add("a", inline_agent(append("a")));
  spec.add("b", inline_agent(append("b")), {"a"});
  auto graph = CompiledGraph::compile(spec);
  for (const bool announce : {false, true}) {
    auto counter = std::make_shared<EventCounter>();
    RunOptions options;
    options.input = make(std::string("x"));
    options.record_events = EventKinds::all();
    options.context_observer = counter;
    options.announce_events = announce;
    RunHandle run = graph->start(std::move(options));
    REQUIRE(run.wait_for(kRunTimeout));
    std::vector<Event> events;
    run.next_events(events, std::chrono::nanoseconds(0));
    CHECK_EQ(events.size(), std::size_t{4});
    if (announce) {
      CHECK(counter->told() >= 1);
    } else {
      CHECK_EQ(counter->told(), 0);
    }
  }
}

// ---- agent policies -----------------------------------------------------------------
// Retries and timeouts hop between the timer thread, the oneTBB arena and the pool, so
// they are here mostly for the sanitizers.

namespace {
// Fails on a pool thread until `failures` attempts have failed, then succeeds.
std::shared_ptr<LambdaAgent> flaky_agent(int failures, std::shared_ptr<std::atomic<int>> attempts) {
  return lambda_agent([failures, attempts](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([failures, attempts, shared] {
      std::this_thread::sleep_for(milliseconds(1));
      if (attempts->fetch_add(1) < failures) {
        shared->completion.fail(Failure{"flaky", {}});
      } else {
        shared->completion.succeed(make(std::string("ok")));
      }
    });
  });
}
}  // namespace

TEST(policy_retry_until_success) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  AgentPolicy policy;
  policy.retry.max_attempts = 3;
  policy.retry.initial_backoff = 0.005;
  GraphSpec spec;
  spec.add("flaky", with_policy(flaky_agent(2, attempts), policy));
  spec.add("after", inline_agent(append("after")), {"flaky"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(attempts->load(), 3);
  CHECK_EQ(as_str(node_output(run, graph, "after")), std::string("ok:after"));
}

TEST(policy_retry_gives_up) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  AgentPolicy policy;
  policy.retry.max_attempts = 2;
  policy.retry.initial_backoff = 0.001;
  GraphSpec spec;
  spec.add("flaky", with_policy(flaky_agent(100, attempts), policy));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(attempts->load(), 2);
  CHECK(contains(run.outcome(0)->failure.message, "after 2 attempts"));
}

TEST(policy_timeout_abandons_the_attempt) {
  auto saw_cancel = std::make_shared<std::atomic<bool>>(false);
  auto returned = std::make_shared<std::atomic<bool>>(false);
  auto slow = lambda_agent([saw_cancel, returned](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([saw_cancel, returned, shared] {
      std::this_thread::sleep_for(milliseconds(300));
      saw_cancel->store(shared->cancellation && shared->cancellation->cancelled());
      shared->completion.succeed(make(std::string("too late")));
      returned->store(true);
    });
  });
  AgentPolicy policy;
  policy.timeout = 0.05;
  GraphSpec spec;
  spec.add("slow", with_policy(slow, policy));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto outcome = run.outcome(0);
  CHECK_EQ(outcome->failure.kind, FailureKind::Timeout);
  CHECK(contains(outcome->failure.message, "timed out"));
  CHECK(run.elapsed() < 0.25);
  // The abandoned attempt finishes later; its result goes nowhere.
  CHECK(eventually([&] { return returned->load(); }));
  CHECK(saw_cancel->load());
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->status, NodeStatus::TimedOut);
}

TEST(policy_fallback_after_final_failure) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  AgentPolicy policy;
  policy.fallback = inline_agent([](const Inputs& in) {
    return make(as_str(in.items.at(0).value) + ":fallback");
  });
  GraphSpec spec;
  spec.add("flaky", with_policy(flaky_agent(100, attempts), policy));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph, make(std::string("in")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:fallback"));
  CHECK_EQ(attempts->load(), 1);
}

// ---- issue 7: hardening --------------------------------------------------------------

namespace {

// Runs its body on `pool` (a small pool a test owns, so it can exhaust it).
std::shared_ptr<LambdaAgent> on_pool(std::shared_ptr<ElasticThreadPool> pool,
                                     std::function<void(Invocation&)> body) {
  return lambda_agent([pool, body](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    pool->submit([body, shared] { body(*shared); });
  });
}

std::shared_ptr<ElasticThreadPool> small_pool(std::size_t max_threads, std::size_t max_blocked) {
  ElasticThreadPool::Options options;
  options.max_threads = max_threads;
  options.max_blocked = max_blocked;
  return std::make_shared<ElasticThreadPool>(options);
}

// Uses about `bytes` of stack.
[[gnu::noinline]] int recurse(std::size_t bytes) {
  volatile char frame[4096];
  frame[0] = static_cast<char>(bytes);
  frame[sizeof(frame) - 1] = 1;
  if (bytes <= sizeof(frame)) return frame[0];
  return recurse(bytes - sizeof(frame)) + frame[sizeof(frame) - 1];
}

}  // namespace

// Defect 3: every pool thread waits (RunHandle::wait) for a nested run whose agent needs
// a pool thread too. Without compensation the pool is exhausted and this hangs forever.
TEST(run_nested_waits_on_pool_threads_do_not_exhaust_the_pool) {
  constexpr int kOuter = 24;
  auto pool = small_pool(4, 64);
  GraphSpec inner_spec;
  inner_spec.add("work", on_pool(pool, [](Invocation& inv) {
                   std::this_thread::sleep_for(milliseconds(1));
                   inv.completion.succeed(make(as_int(inv.inputs.items.at(0).value) * 2));
                 }));
  auto inner = CompiledGraph::compile(inner_spec);
  std::mutex mutex;
  std::vector<RunHandle> inner_runs;
  std::atomic<int> sum{0};
  std::atomic<int> done{0};
  for (int i = 0; i < kOuter; ++i) {
    pool->submit([&, i] {
      RunOptions options;
      options.input = make(i);
      RunHandle run = inner->start(std::move(options));
      {
        std::lock_guard<std::mutex> lock(mutex);
        inner_runs.push_back(run);
      }
      run.wait();
      if (run.status() == RunStatus::Succeeded) sum.fetch_add(as_int(run.sink_outputs().at(0).second));
      done.fetch_add(1);
    });
  }
  CHECK(eventually([&] { return done.load() == kOuter; }, milliseconds(20000)));
  CHECK_EQ(sum.load(), kOuter * (kOuter - 1));
  CHECK(eventually([&] { return pool->blocked_threads() == 0; }));
  // Unblock whatever still waits (only if the check above failed) so the pool can stop.
  std::lock_guard<std::mutex> lock(mutex);
  for (RunHandle& run : inner_runs) run.cancel();
}

// Defect 3: recursion deeper than the pool allows fails at once with a clear error
// instead of hanging, and the pool recovers.
TEST(run_nested_wait_past_the_limit_fails_at_once) {
  auto pool = small_pool(2, 6);
  auto self = std::make_shared<std::shared_ptr<CompiledGraph>>();
  std::weak_ptr<std::shared_ptr<CompiledGraph>> weak_self = self;
  GraphSpec spec;
  spec.add("recurse", on_pool(pool, [weak_self](Invocation& inv) {
             const int depth = as_int(inv.inputs.items.at(0).value);
             if (depth == 0) {
               inv.completion.succeed(make(0));
               return;
             }
             auto graph = weak_self.lock();
             if (!graph) {
               inv.completion.fail(Failure{"test over", {}});
               return;
             }
             RunOptions options;
             options.input = make(depth - 1);
             RunHandle child = (*graph)->start(std::move(options));
             try {
               child.wait();
             } catch (const EngineError& error) {
               inv.completion.fail(Failure{error.what(), {}});
               return;
             }
             if (child.status() == RunStatus::Succeeded) {
               inv.completion.succeed(make(as_int(child.sink_outputs().at(0).second) + 1));
             } else {
               auto failed = child.failed_node();
               inv.completion.fail(
                   Failure{failed ? child.outcome(*failed)->failure.message : "child failed", {}});
             }
           }));
  *self = CompiledGraph::compile(spec);

  RunOptions deep;
  deep.input = make(40);
  RunHandle run = (*self)->start(std::move(deep));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK(contains(run.outcome(0)->failure.message, "max_blocked_pool_threads"));
  CHECK(eventually([&] { return pool->blocked_threads() == 0; }));
  // The refused recursion's bodies unwind on the pool after the run has failed; the next
  // run starts once they all have, so that it finds the pool as a fresh run would.
  CHECK(eventually([&] { return pool->queued() == 0 && pool->idle_threads() == pool->threads(); }));

  // Within the limit the same recursion works, on the same pool.
  RunOptions shallow;
  shallow.input = make(4);
  RunHandle ok = (*self)->start(std::move(shallow));
  REQUIRE(ok.wait_for(kRunTimeout));
  CHECK_EQ(ok.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(ok.sink_outputs().at(0).second), 4);
  self->reset();
}

// Defect 3: after cancel() the waits return and the pool serves new work.
TEST(run_pool_recovers_after_cancelling_nested_runs) {
  constexpr int kOuter = 6;
  auto pool = small_pool(2, 32);
  auto parked = std::make_shared<std::vector<std::shared_ptr<Invocation>>>();
  auto parked_mutex = std::make_shared<std::mutex>();
  GraphSpec inner_spec;
  inner_spec.add("never", lambda_agent([parked, parked_mutex](Invocation inv) {
                   std::lock_guard<std::mutex> lock(*parked_mutex);
                   parked->push_back(std::make_shared<Invocation>(std::move(inv)));
                 }));
  auto inner = CompiledGraph::compile(inner_spec);
  std::mutex mutex;
  std::vector<RunHandle> inner_runs;
  std::atomic<int> returned{0};
  for (int i = 0; i < kOuter; ++i) {
    pool->submit([&] {
      RunHandle run = inner->start(RunOptions{});
      {
        std::lock_guard<std::mutex> lock(mutex);
        inner_runs.push_back(run);
      }
      run.wait();
      returned.fetch_add(1);
    });
  }
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mutex);
    return inner_runs.size() == kOuter;
  }));
  CHECK(eventually([&] { return pool->blocked_threads() == kOuter; }));
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (RunHandle& run : inner_runs) CHECK(run.cancel());
  }
  CHECK(eventually([&] { return returned.load() == kOuter; }));
  CHECK(eventually([&] { return pool->blocked_threads() == 0; }));
  std::atomic<bool> served{false};
  pool->submit([&] { served.store(true); });
  CHECK(eventually([&] { return served.load(); }, milliseconds(2000)));
  std::lock_guard<std::mutex> lock(*parked_mutex);
  parked->clear();
}

// A oneTBB worker must not block on a run: the wait fails at once and cancels the run.
TEST(run_wait_on_an_engine_thread_fails_at_once) {
  GraphSpec other_spec;
  auto parked = std::make_shared<std::shared_ptr<Invocation>>();
  auto is_parked = std::make_shared<std::atomic<bool>>(false);
  other_spec.add("parked", lambda_agent([parked, is_parked](Invocation inv) {
                   *parked = std::make_shared<Invocation>(std::move(inv));
                   is_parked->store(true);
                 }));
  auto other = CompiledGraph::compile(other_spec);
  RunHandle waited = other->start(RunOptions{});
  GraphSpec spec;
  spec.add("waits_inline", lambda_agent([waited](Invocation inv) {
             try {
               waited.wait();
               inv.completion.succeed({});
             } catch (const EngineError& error) {
               inv.completion.fail(Failure{error.what(), {}});
             }
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK(contains(run.outcome(0)->failure.message, "engine thread"));
  CHECK(eventually([&] { return waited.status() == RunStatus::Cancelled; }));
  if (eventually([&] { return is_parked->load(); })) parked->reset();
}

// Defect 8: a child adopted after its parent ended used to stay in the registry forever.
TEST(run_child_adopted_after_parent_ended_leaves_the_registry) {
  auto child = child_graph(milliseconds(1));
  auto held = std::make_shared<std::shared_ptr<Invocation>>();
  auto is_held = std::make_shared<std::atomic<bool>>(false);
  GraphSpec spec;
  spec.add("late", lambda_agent([held, is_held](Invocation inv) {
             *held = std::make_shared<Invocation>(std::move(inv));
             is_held->store(true);
           }));
  auto graph = CompiledGraph::compile(spec);
  const std::size_t before = Runtime::instance().live_runs();
  RunHandle run = start(graph);
  REQUIRE(eventually([&] { return is_held->load(); }));
  CHECK(run.cancel());
  // The agent delegates only now, after its run has ended.
  (*held)->completion.delegate(child, make(std::string("x")));
  CHECK(eventually([&] { return Runtime::instance().live_runs() <= before; }));
  held->reset();
}

// Defect 1: a `then` continuation's input names are its own, not views into the child's
// plan, which is freed once the child run and its graph are gone.
TEST(run_then_inputs_outlive_the_child_plan) {
  auto child_holder = std::make_shared<std::shared_ptr<CompiledGraph>>(child_graph(milliseconds(1)));
  auto names = std::make_shared<std::vector<std::string>>();
  auto names_ready = std::make_shared<std::atomic<bool>>(false);
  auto then = lambda_agent([names, names_ready](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([names, names_ready, shared] {
      // By now the child run and its graph (and so its plan) have been freed.
      std::this_thread::sleep_for(milliseconds(100));
      for (const auto& item : shared->inputs.items) names->push_back(item.name);
      names_ready->store(true);
      shared->completion.succeed(shared->inputs.items.at(0).value);
    });
  });
  GraphSpec spec;
  spec.add("d", lambda_agent([child_holder, then](Invocation inv) {
             auto child = std::move(*child_holder);  // the only reference, dropped below
             inv.completion.delegate(std::move(child), inv.inputs.items.at(0).value, then);
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph, make(std::string("x")));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  REQUIRE(names_ready->load());
  REQUIRE_EQ(names->size(), std::size_t{1});
  CHECK_EQ(names->at(0), std::string("c2"));
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("x:c1:c2"));
}

// Defect 1: what a finished run reports is owned by the caller.
TEST(run_outcome_names_outlive_run_and_graph) {
  std::vector<NodeOutcome> outcomes;
  std::vector<std::pair<std::string, Payload>> sinks;
  {
    GraphSpec spec;
    spec.add("a_rather_long_agent_name_beyond_sso", inline_agent(append("a")));
    auto graph = CompiledGraph::compile(spec);
    RunHandle run = run_to_end(graph, make(std::string("x")));
    outcomes = run.outcomes();
    sinks = run.sink_outputs();
  }
  std::this_thread::sleep_for(milliseconds(50));  // the reaper frees the graph
  CHECK_EQ(outcomes.at(0).name, std::string("a_rather_long_agent_name_beyond_sso"));
  CHECK_EQ(sinks.at(0).first, std::string("a_rather_long_agent_name_beyond_sso"));
}

namespace {
// Cancels the run as soon as an agent's start is recorded: the narrowest window between
// the engine's join check and the hand-off to the agent.
class CancelOnStart final : public RunObserver {
 public:
  void on_run_finished(const RunHandle&) override {}
  void on_event_recorded(std::uint64_t) override {
    std::shared_ptr<RunHandle> run;
    bool cancel;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      run = run_;
      cancel = --skip_ < 0;
    }
    if (!run) return;
    // Taken at once, so the next event finds the queue empty and is told too (the
    // engine tells an observer only of an event into an empty queue).
    std::vector<Event> taken;
    run->next_events(taken, std::chrono::nanoseconds(0));
    if (cancel) run->cancel();
  }
  // Cancels `run` on the event after the next `skip` ones.
  void arm(RunHandle run, int skip) {
    std::vector<Event> taken;
    run.next_events(taken, std::chrono::nanoseconds(0));  // so that the next one is told
    std::lock_guard<std::mutex> lock(mutex_);
    run_ = std::make_shared<RunHandle>(std::move(run));
    skip_ = skip;
  }
  void disarm() {
    std::lock_guard<std::mutex> lock(mutex_);
    run_.reset();
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<RunHandle> run_;
  int skip_ = 0;
};
}  // namespace

// Defect 19 (engine side): once cancel() has returned, no agent body starts.
TEST(run_cancel_before_hand_off_starts_no_agent) {
  auto parked = std::make_shared<std::shared_ptr<Invocation>>();
  auto is_parked = std::make_shared<std::atomic<bool>>(false);
  GraphSpec spec3;
  spec3.add("hold", lambda_agent([parked, is_parked](Invocation inv) {
              *parked = std::make_shared<Invocation>(std::move(inv));
              is_parked->store(true);
            }));
  auto after = inline_agent([](const Inputs&) { return make(4); });
  spec3.add("after", after, {"hold"});
  auto graph3 = CompiledGraph::compile(spec3);
  // Armed once "hold" runs: its finish is the next event, the start of "after" the one
  // after, and that is when the observer cancels.
  auto observer3 = std::make_shared<CancelOnStart>();
  RunOptions o3;
  o3.record_events = EventKinds::all();
  o3.context_observer = observer3;
  o3.announce_events = true;
  RunHandle r3 = graph3->start(std::move(o3));
  REQUIRE(eventually([&] { return is_parked->load(); }));
  observer3->arm(r3, 1);
  // "after" becomes ready now; its start is recorded, the observer cancels the run, and
  // the engine must notice before handing the invocation over.
  (*parked)->completion.succeed(make(1));
  REQUIRE(r3.wait_for(kRunTimeout));
  observer3->disarm();
  CHECK_EQ(r3.status(), RunStatus::Cancelled);
  // The run ended inside the start event; wait for "after" to resolve before counting.
  CHECK(eventually([&] {
    return r3.outcome(index_of(graph3, "after"))->status == NodeStatus::Cancelled;
  }));
  CHECK_EQ(after->calls(), 0);
  parked->reset();
}

// Defect 19 (engine side): a retry due after the run was cancelled never starts.
TEST(policy_cancel_during_backoff_starts_no_attempt) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  AgentPolicy policy;
  policy.retry.max_attempts = 5;
  policy.retry.initial_backoff = 0.1;
  GraphSpec spec;
  spec.add("flaky", flaky_agent(100, attempts)).policy = policy;
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start(graph);
  REQUIRE(eventually([&] { return attempts->load() == 1; }));
  std::this_thread::sleep_for(milliseconds(10));
  CHECK(run.cancel());
  std::this_thread::sleep_for(milliseconds(250));
  CHECK_EQ(attempts->load(), 1);
  CHECK(eventually([&] { return run.outcome(0)->status == NodeStatus::Cancelled; }));
}

// Policies as data: retry decisions are native; the predicate only sees agent errors.
TEST(policy_retry_decisions_are_native) {
  auto asked = std::make_shared<std::atomic<int>>(0);
  RetryPolicy retry;
  retry.retry_on = [asked](const Failure&) {
    asked->fetch_add(1);
    return true;
  };
  CHECK(!retry.should_retry(Failure{"open", {}, FailureKind::CircuitOpen}));
  CHECK(!retry.should_retry(Failure{"spent", {}, FailureKind::Budget}));
  CHECK(!retry.should_retry(Failure{"no", {}, FailureKind::Rejected}));
  CHECK_EQ(asked->load(), 0);
  CHECK(retry.should_retry(Failure{"boom", {}, FailureKind::Error}));
  CHECK_EQ(asked->load(), 1);
  retry.timeouts = RetryTimeouts::Never;
  CHECK(!retry.should_retry(Failure{"slow", {}, FailureKind::Timeout}));
  retry.timeouts = RetryTimeouts::Always;
  CHECK(retry.should_retry(Failure{"slow", {}, FailureKind::Timeout}));
  CHECK_EQ(asked->load(), 1);
  retry.timeouts = RetryTimeouts::AskPredicate;
  CHECK(retry.should_retry(Failure{"slow", {}, FailureKind::Timeout}));
  CHECK_EQ(asked->load(), 2);
  RetryPolicy no_predicate;
  CHECK(no_predicate.should_retry(Failure{"boom", {}, FailureKind::Error}));
  CHECK(!no_predicate.should_retry(Failure{"open", {}, FailureKind::CircuitOpen}));
}

TEST(policy_on_node_spec_timeouts_not_retried_when_never) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto slow = lambda_agent([attempts](Invocation inv) {
    attempts->fetch_add(1);
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([shared] {
      std::this_thread::sleep_for(milliseconds(100));
      shared->completion.succeed({});
    });
  });
  GraphSpec spec;
  NodeSpec& node = spec.add("slow", slow);
  node.policy = AgentPolicy{};
  node.policy->timeout = 0.02;
  node.policy->retry.max_attempts = 3;
  node.policy->retry.timeouts = RetryTimeouts::Never;
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(run.outcome(0)->status, NodeStatus::TimedOut);
  CHECK_EQ(attempts->load(), 1);

  node.policy->retry.timeouts = RetryTimeouts::Always;
  auto retried = CompiledGraph::compile(spec);
  RunHandle again = run_to_end(retried);
  CHECK_EQ(again.status(), RunStatus::Failed);
  CHECK_EQ(attempts->load(), 4);
}

// Defect 16: an inline agent runs on a oneTBB worker, which now has the main thread's
// stack: recursion that fits on the main thread fits there too.
TEST(run_inline_agent_has_the_main_thread_stack) {
  std::atomic<std::size_t> stack{0};
  std::atomic<bool> on_engine{false};
  const std::size_t expected = thread_stack_size();
  GraphSpec spec;
  spec.add("deep", inline_agent([&](const Inputs&) {
             on_engine.store(Runtime::on_engine_thread());
             stack.store(current_stack_size());
             // Three quarters of the main thread's stack (at most 48 MiB, to stay quick).
             recurse(std::min<std::size_t>(expected / 4 * 3, std::size_t{48} << 20));
             return make(1);
           }));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = run_to_end(graph);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK(on_engine.load());
  CHECK(stack.load() >= expected);
  CHECK_EQ(Runtime::instance().options().stack_size, expected);
}

// The runtime is an explicit object with options; they are fixed once it has started.
TEST(runtime_options_are_fixed_once_started) {
  Runtime& runtime = Runtime::instance();
  CHECK(Runtime::started());
  const Runtime::Options& options = runtime.options();
  CHECK(options.workers >= 1);
  if (const char* env = std::getenv("COUNTERPOINT_WORKERS")) {
    if (std::atoi(env) >= 1) CHECK_EQ(options.workers, std::atoi(env));
  }
  CHECK_EQ(runtime.pool().options().max_threads, options.max_pool_threads);
  CHECK_EQ(runtime.pool().options().max_blocked, options.max_blocked_pool_threads);
  auto error = thrown<EngineError>([] { Runtime::configure(Runtime::Options{}); });
  REQUIRE(error.has_value());
  CHECK(contains(error->what(), "before first use"));
}
