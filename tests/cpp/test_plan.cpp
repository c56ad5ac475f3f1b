// Plan::build: validation errors name the offending node, and valid graphs come out in a
// stable topological order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/graph_spec.hpp"
#include "counterpoint/plan.hpp"
#include "counterpoint/policy_agent.hpp"
#include "test_harness.hpp"

using namespace counterpoint;

namespace {

class NoopAgent : public Agent {
 public:
  void invoke(Invocation invocation) override { invocation.completion.succeed({}); }
};

std::shared_ptr<Agent> noop() { return std::make_shared<NoopAgent>(); }

std::optional<GraphError> build_error(const GraphSpec& spec) {
  return cptest::thrown<GraphError>([&] { Plan::build(spec); });
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::vector<std::string> names(const Plan& plan, const std::vector<std::uint32_t>& indices) {
  std::vector<std::string> out;
  for (std::uint32_t i : indices) out.push_back(plan.nodes()[i].name);
  return out;
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& part : parts) out += (out.empty() ? "" : ",") + part;
  return out;
}

}  // namespace

TEST(plan_rejects_empty_graph) {
  auto error = build_error(GraphSpec{});
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string());
  CHECK(contains(error->what(), "no agents"));
}

TEST(plan_rejects_empty_name) {
  GraphSpec spec;
  spec.add("a", noop());
  spec.add("", noop(), {"a"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string());
  CHECK(contains(error->what(), "#2"));
  CHECK(contains(error->what(), "empty name"));
}

TEST(plan_rejects_duplicate_name) {
  GraphSpec spec;
  spec.add("a", noop());
  spec.add("b", noop());
  spec.add("a", noop());
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("a"));
  CHECK(contains(error->what(), "more than one agent"));
}

TEST(plan_rejects_null_agent) {
  GraphSpec spec;
  spec.add("a", noop());
  spec.add("b", nullptr, {"a"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("b"));
  CHECK(contains(error->what(), "no agent"));
}

TEST(plan_rejects_unknown_predecessor) {
  GraphSpec spec;
  spec.add("a", noop());
  spec.add("b", noop(), {"a", "ghost"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("b"));
  CHECK(contains(error->what(), "'ghost'"));
  CHECK(contains(error->what(), "agent 'b'"));
}

TEST(plan_rejects_self_loop) {
  GraphSpec spec;
  spec.add("a", noop(), {"a"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("a"));
  CHECK(contains(error->what(), "after itself"));
}

TEST(plan_rejects_repeated_predecessor) {
  GraphSpec spec;
  spec.add("a", noop());
  spec.add("b", noop(), {"a", "a"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("b"));
  CHECK(contains(error->what(), "more than once"));
}

TEST(plan_cycle_message_shows_the_cycle) {
  GraphSpec spec;
  spec.add("start", noop());
  spec.add("a", noop(), {"start", "c"});
  spec.add("b", noop(), {"a"});
  spec.add("c", noop(), {"b"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("a"));
  CHECK(contains(error->what(), "a -> b -> c -> a"));
  CHECK(contains(error->what(), "cycle"));
}

TEST(plan_cycle_names_a_node_on_the_cycle) {
  // "down" is declared first and cannot be ordered, but only because it hangs off the
  // cycle; the error must blame a node that is on the cycle.
  GraphSpec spec;
  spec.add("down", noop(), {"y"});
  spec.add("x", noop(), {"y"});
  spec.add("y", noop(), {"x"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("x"));
  CHECK(contains(error->what(), "x -> y -> x"));
  CHECK(!contains(error->what(), "down"));
}

TEST(plan_two_node_cycle) {
  GraphSpec spec;
  spec.add("p", noop(), {"q"});
  spec.add("q", noop(), {"p"});
  auto error = build_error(spec);
  REQUIRE(error);
  CHECK_EQ(error->node(), std::string("p"));
  CHECK(contains(error->what(), "p -> q -> p"));
}

TEST(plan_compile_throws_graph_error) {
  GraphSpec spec;
  spec.add("a", noop(), {"nope"});
  CHECK_THROWS(GraphError, CompiledGraph::compile(spec));
}

TEST(plan_topological_order) {
  GraphSpec spec;
  spec.add("d", noop(), {"b", "c"});
  spec.add("c", noop(), {"a"});
  spec.add("b", noop(), {"a"});
  spec.add("a", noop());
  spec.add("lonely", noop());
  auto plan = Plan::build(spec);
  REQUIRE_EQ(plan->size(), std::size_t{5});
  const auto& nodes = plan->nodes();
  for (std::uint32_t i = 0; i < nodes.size(); ++i) {
    for (std::uint32_t pred : nodes[i].predecessors) CHECK(pred < i);
    for (std::uint32_t succ : nodes[i].successors) CHECK(succ > i);
  }
  // Ready nodes are taken in declaration order, so the order is stable.
  std::vector<std::string> order;
  for (const auto& node : nodes) order.push_back(node.name);
  CHECK_EQ(joined(order), std::string("a,lonely,c,b,d"));
  // Predecessors keep the order of `after`, not the topological one.
  const auto d = plan->find("d");
  REQUIRE(d >= 0);
  CHECK_EQ(joined(names(*plan, nodes[d].predecessors)), std::string("b,c"));
  CHECK_EQ(joined(names(*plan, nodes[plan->find("a")].successors)), std::string("c,b"));
  CHECK_EQ(plan->find("missing"), std::int64_t{-1});
}

TEST(plan_keeps_agent_and_priority) {
  auto agent = noop();
  GraphSpec spec;
  spec.add("only", agent, {}, 7);
  auto plan = Plan::build(spec);
  CHECK(plan->nodes()[0].agent == agent);
  CHECK_EQ(plan->nodes()[0].priority, 7);
}

// Issue 7, defect 10: an explicit 0 is a priority like any other; only unset inherits.
TEST(plan_explicit_zero_priority_is_kept) {
  GraphSpec spec;
  spec.add("urgent", noop(), {}, 10);
  spec.add("explicit_zero", noop(), {"urgent"}, 0);
  spec.add("unset", noop(), {"urgent"});
  spec.add("low", noop(), {}, -5);
  spec.add("after_low", noop(), {"low"});
  auto plan = Plan::build(spec);
  auto priority = [&](const std::string& name) {
    return plan->nodes()[static_cast<std::size_t>(plan->find(name))].priority;
  };
  CHECK_EQ(priority("urgent"), 10);
  CHECK_EQ(priority("explicit_zero"), 0);
  CHECK_EQ(priority("unset"), 10);
  CHECK_EQ(priority("low"), -5);
  CHECK_EQ(priority("after_low"), 0);  // an unset priority never drops below normal
}

TEST(plan_unset_priority_inherits_through_a_chain) {
  GraphSpec spec;
  spec.add("a", noop(), {}, 3);
  spec.add("b", noop(), {"a"});
  spec.add("c", noop(), {"b"});
  spec.add("d", noop(), {"c"}, -1);
  auto plan = Plan::build(spec);
  CHECK_EQ(plan->nodes()[static_cast<std::size_t>(plan->find("c"))].priority, 3);
  CHECK_EQ(plan->nodes()[static_cast<std::size_t>(plan->find("d"))].priority, -1);
}

// Issue 7, defect 15: '/' separates nested agent paths in events.
TEST(plan_rejects_slash_in_name) {
  GraphSpec spec;
  spec.add("ok", noop());
  spec.add("outer/inner", noop(), {"ok"});
  auto error = build_error(spec);
  REQUIRE(error.has_value());
  CHECK_EQ(error->node(), std::string("outer/inner"));
  CHECK(contains(error->what(), "'/'"));
  CHECK(contains(error->what(), "rename"));
}

// Policies are data on the node spec: compile() wraps the agent natively.
TEST(plan_policy_wraps_the_agent) {
  auto agent = noop();
  GraphSpec spec;
  NodeSpec& node = spec.add("guarded", agent);
  node.policy = AgentPolicy{};
  node.policy->retry.max_attempts = 3;
  node.policy->timeout = 1.5;
  spec.add("plain", agent);
  auto plan = Plan::build(spec);
  auto wrapped = std::dynamic_pointer_cast<PolicyAgent>(plan->nodes()[0].agent);
  REQUIRE(wrapped != nullptr);
  CHECK_EQ(wrapped->policy().retry.max_attempts, 3u);
  CHECK_EQ(wrapped->policy().timeout, 1.5);
  CHECK(plan->nodes()[1].agent == agent);
}

TEST(plan_rejects_invalid_policies) {
  auto error_for = [](auto mutate) {
    GraphSpec spec;
    NodeSpec& node = spec.add("guarded", noop());
    node.policy = AgentPolicy{};
    mutate(*node.policy);
    return build_error(spec);
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto attempts = error_for([](AgentPolicy& p) { p.retry.max_attempts = 0; });
  REQUIRE(attempts.has_value());
  CHECK_EQ(attempts->node(), std::string("guarded"));
  CHECK(contains(attempts->what(), "max_attempts"));
  auto timeout = error_for([&](AgentPolicy& p) { p.timeout = nan; });
  REQUIRE(timeout.has_value());
  CHECK(contains(timeout->what(), "timeout"));
  CHECK(error_for([](AgentPolicy& p) { p.timeout = -1; }).has_value());
  CHECK(error_for([](AgentPolicy& p) { p.retry.jitter = 2; }).has_value());
  CHECK(error_for([](AgentPolicy& p) { p.retry.multiplier = 0.5; }).has_value());
  CHECK(error_for([&](AgentPolicy& p) { p.retry.initial_backoff = nan; }).has_value());
  auto limit = error_for([](AgentPolicy& p) { p.limits.push_back(nullptr); });
  REQUIRE(limit.has_value());
  CHECK(contains(limit->what(), "limit"));
  CHECK(!error_for([](AgentPolicy&) {}).has_value());
}

TEST(plan_entries_and_sinks) {
  GraphSpec spec;
  spec.add("in1", noop());
  spec.add("in2", noop());
  spec.add("mid", noop(), {"in1", "in2"});
  spec.add("out1", noop(), {"mid"});
  spec.add("out2", noop(), {"mid", "in2"});
  spec.add("solo", noop());
  auto plan = Plan::build(spec);
  CHECK_EQ(joined(names(*plan, plan->entries())), std::string("in1,in2,solo"));
  CHECK_EQ(joined(names(*plan, plan->sinks())), std::string("solo,out1,out2"));
}

TEST(plan_single_node_is_entry_and_sink) {
  GraphSpec spec;
  spec.add("one", noop());
  auto plan = Plan::build(spec);
  CHECK_EQ(joined(names(*plan, plan->entries())), std::string("one"));
  CHECK_EQ(joined(names(*plan, plan->sinks())), std::string("one"));
}

TEST(plan_to_json) {
  GraphSpec spec;
  spec.add("fetch", noop());
  spec.add("sum\"mary", noop(), {"fetch"}, 3);
  auto plan = Plan::build(spec);
  const std::string json = plan->to_json();
  CHECK(cptest::json_valid(json));
  CHECK(contains(json, R"("name":"fetch")"));
  CHECK(contains(json, R"("name":"sum\"mary")"));
  CHECK(contains(json, R"("after":["fetch"])"));
  CHECK(contains(json, R"("priority":3)"));
  CHECK(contains(json, R"("entries":["fetch"])"));
  CHECK(contains(json, R"("sinks":["sum\"mary"])"));
}

TEST(json_validator_sanity) {
  // The harness's own checker must reject what it should, or the JSON tests prove nothing.
  CHECK(cptest::json_valid(R"({"a":[1,2.5,-3e2,true,null,"x\n"],"b":{}})"));
  CHECK(!cptest::json_valid(R"({"a":1,})"));
  CHECK(!cptest::json_valid(R"({"a":1)"));
  CHECK(!cptest::json_valid(R"({a:1})"));
  CHECK(!cptest::json_valid(R"([1 2])"));
  CHECK(!cptest::json_valid(""));
}
