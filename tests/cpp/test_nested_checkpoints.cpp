// Durable runs at every depth: a run with a NodeHook hands its child runs the same hook
// and key, each nested agent's outcome is named by its checkpoint path (a loop's n-th
// delegation of one call marked "#n"), outcomes known by path restore nested agents
// without running them, and a child run that stops for a person pauses its parent.
#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::seconds;

namespace {

constexpr auto kRunTimeout = seconds(30);

// Records each outcome's run key and checkpoint path, then delivers it at once.
class PathHook : public NodeHook {
 public:
  void on_outcome(const RunHandle& run, std::uint32_t node, Outcome outcome,
                  Completion deliver) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      paths_.push_back(run.checkpoint_path(node));
      keys_.push_back(run.key());
    }
    deliver.resolve(std::move(outcome));
  }
  std::vector<std::string> paths() const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto sorted = paths_;
    std::sort(sorted.begin(), sorted.end());
    return sorted;
  }
  std::vector<std::string> keys() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return keys_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> paths_;
  std::vector<std::string> keys_;
};

std::shared_ptr<CompiledGraph> chain_graph(std::shared_ptr<InlineAgent> first,
                                           std::shared_ptr<InlineAgent> second) {
  GraphSpec spec;
  spec.add("c1", std::move(first));
  spec.add("c2", std::move(second), {"c1"});
  return CompiledGraph::compile(spec);
}

// "d" runs `child` twice in one call: its `then` delegates once more, and the second
// child run's output is the agent's.
std::shared_ptr<CompiledGraph> looping_graph(const std::shared_ptr<CompiledGraph>& child) {
  auto then = lambda_agent([child](Invocation inv) {
    inv.completion.delegate(child, make(as_str(inv.inputs.items.at(0).value) + ":again"));
  });
  GraphSpec spec;
  spec.add("d", lambda_agent([child, then](Invocation inv) {
             inv.completion.delegate(child, inv.inputs.items.at(0).value, then);
           }));
  return CompiledGraph::compile(spec);
}

RunOptions durable(std::shared_ptr<NodeHook> hook, std::string key = "run-1") {
  RunOptions options;
  options.input = make(std::string("x"));
  options.key = std::move(key);
  options.node_hook = std::move(hook);
  return options;
}

}  // namespace

TEST(nested_outcomes_reach_the_hook_under_their_paths) {
  auto child = chain_graph(inline_agent(append("c1")), inline_agent(append("c2")));
  GraphSpec spec;
  spec.add("d", lambda_agent([child](Invocation inv) {
             inv.completion.delegate(child, inv.inputs.items.at(0).value);
           }));
  spec.add("after", inline_agent(append("after")), {"d"});
  auto graph = CompiledGraph::compile(spec);
  auto hook = std::make_shared<PathHook>();
  RunHandle run = graph->start(durable(hook));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("x:c1:c2:after"));
  CHECK(hook->paths() == (std::vector<std::string>{"after", "d", "d/c1", "d/c2"}));
  for (const std::string& key : hook->keys()) CHECK_EQ(key, std::string("run-1"));
}

TEST(each_delegation_of_one_call_gets_its_own_paths) {
  auto child = chain_graph(inline_agent(append("c1")), inline_agent(append("c2")));
  auto graph = looping_graph(child);
  auto hook = std::make_shared<PathHook>();
  RunHandle run = graph->start(durable(hook));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("x:c1:c2:again:c1:c2"));
  CHECK(hook->paths() == (std::vector<std::string>{"d", "d#2/c1", "d#2/c2", "d/c1", "d/c2"}));
}

TEST(a_run_without_a_hook_checkpoints_nothing_below) {
  auto child = chain_graph(inline_agent(append("c1")), inline_agent(append("c2")));
  auto graph = looping_graph(child);
  RunOptions options;
  options.input = make(std::string("x"));
  RunHandle run = graph->start(std::move(options));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(run.checkpoint_path(0), std::string("d"));
}

TEST(outcomes_known_by_path_restore_nested_agents) {
  auto c1 = inline_agent(append("c1"));
  auto c2 = inline_agent(append("c2"));
  auto graph = looping_graph(chain_graph(c1, c2));
  auto known = std::make_shared<RestoredPaths>();
  known->emplace("d/c1", Outcome::success(make(std::string("R1"))));
  known->emplace("d#2/c1", Outcome::success(make(std::string("R2"))));
  known->emplace("d#2/c2", Outcome::success(make(std::string("R3"))));
  known->emplace("elsewhere/c1", Outcome::success(make(std::string("unused"))));
  RunOptions options = durable(std::make_shared<PathHook>());
  options.restored_below = known;
  RunHandle run = graph->start(std::move(options));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  // The first iteration ran c2 on c1's restored output; the second ran nothing.
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("R3"));
  CHECK_EQ(c1->calls(), 0);
  CHECK_EQ(c2->calls(), 1);
}

TEST(a_question_in_a_child_run_pauses_its_parents) {
  auto asking = lambda_agent([](Invocation inv) {
    inv.completion.resolve(Outcome::needs_input(make(std::string("which?")), "awaits input"));
  });
  GraphSpec inner;
  inner.add("ask", asking);
  inner.add("use", inline_agent(append("use")), {"ask"});
  auto child = CompiledGraph::compile(inner);
  GraphSpec middle;
  middle.add("m", lambda_agent([child](Invocation inv) {
               inv.completion.delegate(child, inv.inputs.items.at(0).value);
             }));
  auto middle_graph = CompiledGraph::compile(middle);
  GraphSpec top;
  top.add("t", lambda_agent([middle_graph](Invocation inv) {
            inv.completion.delegate(middle_graph, inv.inputs.items.at(0).value);
          }));
  top.add("other", inline_agent(append("other")));
  auto graph = CompiledGraph::compile(top);
  auto hook = std::make_shared<PathHook>();
  RunHandle run = graph->start(durable(hook));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::NeedsInput);
  CHECK_EQ(outcome_of(run, graph, "t").status, NodeStatus::NeedsInput);
  CHECK_EQ(outcome_of(run, graph, "other").status, NodeStatus::Succeeded);
  // Only the agent that asked is checkpointed as waiting: the agents that wait for it
  // re-run on resume and find it there.
  CHECK(hook->paths() == (std::vector<std::string>{"other", "t/m/ask"}));
}

TEST(a_restored_question_keeps_waiting_without_a_call) {
  auto asking = inline_agent(append("asked"));
  GraphSpec inner;
  inner.add("ask", asking);
  auto child = CompiledGraph::compile(inner);
  GraphSpec top;
  top.add("t", lambda_agent([child](Invocation inv) {
            inv.completion.delegate(child, inv.inputs.items.at(0).value);
          }));
  auto graph = CompiledGraph::compile(top);
  auto known = std::make_shared<RestoredPaths>();
  known->emplace("t/ask", Outcome::needs_input(make(std::string("which?")), "awaits input"));
  RunOptions options = durable(std::make_shared<PathHook>());
  options.restored_below = known;
  RunHandle run = graph->start(std::move(options));
  REQUIRE(run.wait_for(kRunTimeout));
  CHECK_EQ(run.status(), RunStatus::NeedsInput);
  CHECK_EQ(asking->calls(), 0);
}
