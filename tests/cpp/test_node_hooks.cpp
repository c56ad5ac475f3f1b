// NodeHook: sees every agent outcome before the run does (the bindings persist
// checkpoints there) and delivers it through a Completion, possibly later and from
// another thread; a delivery it drops fails the node, and it may change what it
// delivers.
#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;

namespace {

struct HookCall {
  std::uint64_t run_id = 0;
  std::uint32_t node = 0;
  Outcome::Kind kind = Outcome::Kind::Succeeded;
  NodeStatus status_at_hook = NodeStatus::Pending;  // what the run knew at that moment
  bool run_running = false;
};

// Records each outcome, then delivers it at once (unchanged) on the agent's thread.
class RecordingHook : public NodeHook {
 public:
  std::function<void(std::uint32_t)> on_call;  // optional, runs before delivering

  void on_outcome(const RunHandle& run, std::uint32_t node, Outcome outcome,
                  Completion deliver) override {
    HookCall call;
    call.run_id = run.id();
    call.node = node;
    call.kind = outcome.kind;
    call.status_at_hook = run.outcome(node)->status;
    call.run_running = !run.done();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      calls_.push_back(call);
    }
    if (on_call) on_call(node);
    deliver.resolve(std::move(outcome));
  }
  std::vector<HookCall> calls() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return calls_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<HookCall> calls_;
};

// Keeps each outcome and its delivery for the test to deliver later.
class HoldingHook : public NodeHook {
 public:
  struct Held {
    std::uint32_t node;
    Outcome outcome;
    Completion deliver;
  };
  void on_outcome(const RunHandle&, std::uint32_t node, Outcome outcome,
                  Completion deliver) override {
    held_.put(Held{node, std::move(outcome), std::move(deliver)});
  }
  Held take() { return held_.take(); }
  std::size_t held() const { return held_.size(); }

 private:
  HandOff<Held> held_;
};

RunOptions hooked(std::shared_ptr<NodeHook> hook, Payload input = make(std::string("in"))) {
  RunOptions options;
  options.input = std::move(input);
  options.node_hook = std::move(hook);
  return options;
}

}  // namespace

TEST(hook_sees_every_outcome_before_the_run) {
  auto a = inline_agent(append("a"));
  auto b = pooled_agent(milliseconds(1), append("b"));
  auto f = failing_agent(milliseconds(1), "f failed");
  GraphSpec spec;
  spec.add("a", a);
  spec.add("b", b, {"a"});
  spec.add("f", f, {"a"}).on_error = ErrorMode::Continue;
  auto graph = CompiledGraph::compile(spec);
  auto hook = std::make_shared<RecordingHook>();
  std::atomic<int> successors_started_before_a_delivered{-1};
  const std::uint32_t a_index = node_index(graph, "a");
  hook->on_call = [&](std::uint32_t node) {
    if (node == a_index) successors_started_before_a_delivered.store(b->calls() + f->calls());
  };
  RunHandle run = finish(graph, hooked(hook));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:a:b"));
  auto calls = hook->calls();
  REQUIRE_EQ(calls.size(), 3u);
  std::vector<bool> seen(graph->plan().size(), false);
  for (const auto& call : calls) {
    CHECK_EQ(call.run_id, run.id());
    CHECK_EQ(call.status_at_hook, NodeStatus::Running);  // the run has not seen it yet
    CHECK(call.run_running);
    seen[call.node] = true;
    const bool failed = call.node == node_index(graph, "f");
    CHECK(call.kind == (failed ? Outcome::Kind::Failed : Outcome::Kind::Succeeded));
  }
  CHECK(seen[node_index(graph, "a")] && seen[node_index(graph, "b")] && seen[node_index(graph, "f")]);
  CHECK_EQ(successors_started_before_a_delivered.load(), 0);
  CHECK_EQ(outcome_of(run, graph, "f").failure.message, std::string("f failed"));
}

TEST(hook_delays_delivery_from_another_thread) {
  auto a = inline_agent(append("a"));
  auto b = inline_agent(append("b"));
  auto graph = chain_of({{"a", a}, {"b", b}});
  auto hook = std::make_shared<HoldingHook>();
  RunHandle run = start_with(graph, hooked(hook));
  auto first = hook->take();
  CHECK_EQ(first.node, node_index(graph, "a"));
  std::this_thread::sleep_for(milliseconds(20));
  // Held back: the run waits, and "b" has not started.
  CHECK(!run.done());
  CHECK_EQ(status_of(run, graph, "a"), NodeStatus::Running);
  CHECK_EQ(b->calls(), 0);
  std::thread deliverer([&] { first.deliver.resolve(std::move(first.outcome)); });
  deliverer.join();
  auto second = hook->take();
  CHECK_EQ(second.node, node_index(graph, "b"));
  CHECK_EQ(b->calls(), 1);
  CHECK(!run.done());
  std::thread([&] { second.deliver.resolve(std::move(second.outcome)); }).join();
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:a:b"));
}

TEST(hook_dropped_delivery_fails_the_node) {
  class DroppingHook : public NodeHook {
   public:
    void on_outcome(const RunHandle&, std::uint32_t, Outcome, Completion) override {}
  };
  auto after = inline_agent(append("after"));
  auto graph = chain_of({{"work", inline_agent(append("work"))}, {"after", after}});
  RunHandle run = finish(graph, hooked(std::make_shared<DroppingHook>()));
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto work = outcome_of(run, graph, "work");
  CHECK_EQ(work.status, NodeStatus::Failed);
  CHECK(contains(work.failure.message, "dropped"));
  CHECK_EQ(after->calls(), 0);
  CHECK_EQ(run.failed_node().value_or(99), node_index(graph, "work"));
}

TEST(hook_dropped_delivery_on_another_thread_fails_the_node) {
  auto hook = std::make_shared<HoldingHook>();
  GraphSpec spec;
  spec.add("work", pooled_agent(milliseconds(1), append("work")));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start_with(graph, hooked(hook));
  {
    auto held = hook->take();
    std::thread([dropped = std::move(held.deliver)]() mutable {
      Completion gone = std::move(dropped);
    }).join();
  }
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK(contains(run.outcome(0)->failure.message, "dropped"));
}

TEST(hook_may_change_what_it_delivers) {
  // A review gate in the hook: the agent succeeded, the hook holds the output for review.
  class GateHook : public NodeHook {
   public:
    void on_outcome(const RunHandle&, std::uint32_t, Outcome outcome, Completion deliver) override {
      Outcome review;
      review.kind = Outcome::Kind::NeedsReview;
      review.output = std::move(outcome.output);
      review.failure.message = "held for review";
      review.confidence = 0.4;
      deliver.resolve(std::move(review));
    }
  };
  auto next = inline_agent(append("next"));
  auto graph = chain_of({{"draft", inline_agent(append("draft"))}, {"next", next}});
  RunHandle run = finish(graph, hooked(std::make_shared<GateHook>()));
  CHECK_EQ(run.status(), RunStatus::NeedsReview);
  auto draft = outcome_of(run, graph, "draft");
  CHECK_EQ(draft.status, NodeStatus::NeedsReview);
  CHECK_EQ(as_str(draft.output), std::string("in:draft"));
  CHECK_EQ(draft.failure.message, std::string("held for review"));
  CHECK_EQ(next->calls(), 0);
}

TEST(hook_is_not_called_for_restored_nodes) {
  auto hook = std::make_shared<RecordingHook>();
  GraphSpec spec;
  spec.add("a", inline_agent(append("a")));
  spec.add("b", inline_agent(append("b")), {"a"});
  auto graph = CompiledGraph::compile(spec);
  RunOptions options = hooked(hook);
  Restored restored;
  restored.node = node_index(graph, "a");
  restored.outcome = Outcome::success(make(std::string("A*")));
  options.restored.push_back(std::move(restored));
  RunHandle run = finish(graph, std::move(options));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  auto calls = hook->calls();
  REQUIRE_EQ(calls.size(), 1u);  // already checkpointed: only "b" is new
  CHECK_EQ(calls[0].node, node_index(graph, "b"));
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("A*:b"));
}

TEST(hook_sees_only_the_final_outcome_of_a_retried_agent) {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto flaky = lambda_agent([attempts](Invocation inv) {
    if (attempts->fetch_add(1) < 2) {
      inv.completion.fail(Failure{"flaky", {}});
    } else {
      inv.completion.succeed(make(std::string("ok")));
    }
  });
  AgentPolicy policy;
  policy.retry.max_attempts = 3;
  GraphSpec spec;
  spec.add("flaky", with_policy(flaky, policy));
  auto graph = CompiledGraph::compile(spec);
  auto hook = std::make_shared<RecordingHook>();
  RunHandle run = finish(graph, hooked(hook));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(attempts->load(), 3);
  auto calls = hook->calls();
  REQUIRE_EQ(calls.size(), 1u);
  CHECK(calls[0].kind == Outcome::Kind::Succeeded);
}

TEST(hook_delivery_after_the_run_was_cancelled) {
  auto after = inline_agent(append("after"));
  auto observer = std::make_shared<CountingObserver>();
  GraphSpec spec;
  spec.add("work", inline_agent(append("work")));
  spec.add("after", after, {"work"});
  auto graph = CompiledGraph::compile(spec);
  auto hook = std::make_shared<HoldingHook>();
  RunOptions options = hooked(hook);
  options.observer = observer;
  RunHandle run = start_with(graph, std::move(options));
  auto held = hook->take();
  CHECK(held.deliver.run_ended() == false);
  CHECK(run.cancel());
  CHECK(held.deliver.run_ended());
  held.deliver.resolve(std::move(held.outcome));  // too late: discarded
  CHECK_EQ(run.status(), RunStatus::Cancelled);
  CHECK_EQ(status_of(run, graph, "work"), NodeStatus::Cancelled);
  CHECK_EQ(after->calls(), 0);
  CHECK(eventually([&] { return observer->calls() == 1; }));
}

TEST(hook_delivery_resolves_exactly_once) {
  auto hook = std::make_shared<HoldingHook>();
  GraphSpec spec;
  spec.add("work", inline_agent(append("work")));
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = start_with(graph, hooked(hook));
  auto held = hook->take();
  Outcome copy = held.outcome;
  held.deliver.resolve(std::move(held.outcome));
  CHECK(held.deliver.resolved());
  CHECK_THROWS(EngineError, held.deliver.resolve(std::move(copy)));
  wait_end(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
}

TEST(hook_delivers_out_of_order_across_many_runs) {
  // Twenty runs of a two-agent chain; the hook's deliveries are made by two threads in
  // whatever order they come. Each run must still get its own outputs.
  auto hook = std::make_shared<HoldingHook>();
  GraphSpec spec;
  spec.add("first", pooled_agent(milliseconds(1), append("first")));
  spec.add("second", inline_agent(append("second")), {"first"});
  auto graph = CompiledGraph::compile(spec);
  constexpr int kRuns = 20;
  std::vector<RunHandle> runs;
  for (int i = 0; i < kRuns; ++i) {
    runs.push_back(start_with(graph, hooked(hook, make("run" + std::to_string(i)))));
  }
  std::atomic<int> delivered{0};
  std::vector<std::thread> deliverers;
  for (int t = 0; t < 2; ++t) {
    deliverers.emplace_back([&] {
      while (delivered.fetch_add(1) < 2 * kRuns) {
        auto held = hook->take();
        held.deliver.resolve(std::move(held.outcome));
      }
    });
  }
  for (auto& t : deliverers) t.join();
  for (int i = 0; i < kRuns; ++i) {
    wait_end(runs[i]);
    CHECK_EQ(runs[i].status(), RunStatus::Succeeded);
    CHECK_EQ(as_str(runs[i].sink_outputs().at(0).second),
             "run" + std::to_string(i) + ":first:second");
  }
  CHECK_EQ(hook->held(), 0u);
}
