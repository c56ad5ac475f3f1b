// Plan::build: validation errors name the offending node, and valid graphs come out in a
// stable topological order.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/graph_spec.hpp"
#include "counterpoint/plan.hpp"
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
