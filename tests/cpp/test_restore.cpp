// Restored outcomes (checkpoints, review decisions): a node whose outcome is known
// before the run starts resolves with it when its turn comes, without running its agent,
// and the run goes on from there exactly as if the agent had produced it: outputs flow,
// routes are honoured, a rejection fails the node, a pending review pauses the run.
#include <memory>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;

namespace {

Restored known(const std::shared_ptr<CompiledGraph>& graph, const std::string& name,
               Outcome outcome) {
  Restored restored;
  restored.node = node_index(graph, name);
  restored.outcome = std::move(outcome);
  return restored;
}

RunOptions resume(std::vector<Restored> restored, Payload input = make(std::string("in"))) {
  RunOptions options;
  options.input = std::move(input);
  options.restored = std::move(restored);
  return options;
}

Outcome routed(Payload output, std::vector<std::string> routes) {
  Outcome outcome = Outcome::success(std::move(output));
  outcome.routed = true;
  outcome.routes = std::move(routes);
  return outcome;
}

}  // namespace

TEST(restore_outcomes_resolve_without_running) {
  auto a = inline_agent(append("a"));
  auto b = pooled_agent(milliseconds(1), append("b"));
  auto c = inline_agent(append("c"));
  auto graph = chain_of({{"a", a}, {"b", b}, {"c", c}});
  RunOptions options = resume({known(graph, "a", Outcome::success(make(std::string("A*")))),
                               known(graph, "b", Outcome::success(make(std::string("B*"))))});
  options.record_events = EventKinds::all();
  RunHandle run = graph->start(std::move(options));
  auto events = drain_events(run);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(a->calls() + b->calls(), 0);
  CHECK_EQ(c->calls(), 1);
  CHECK_EQ(as_str(c->seen().at(0).values.at(0)), std::string("B*"));  // the restored output
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("B*:c"));
  for (const char* name : {"a", "b"}) {
    auto outcome = outcome_of(run, graph, name);
    CHECK_EQ(outcome.status, NodeStatus::Succeeded);
    CHECK(outcome.restored);
    CHECK(outcome.started >= 0.0);
    CHECK(outcome.finished >= outcome.started);
  }
  CHECK(!outcome_of(run, graph, "c").restored);
  CHECK_EQ(as_str(outcome_of(run, graph, "a").output), std::string("A*"));
  // The event stream marks restored starts.
  int restored_starts = 0;
  for (const auto& event : events) {
    if (event.kind == EventKind::Start && event.message == "restored") ++restored_starts;
  }
  CHECK_EQ(restored_starts, 2);
}

TEST(restore_a_middle_node_waits_for_its_predecessors) {
  // Only "b" is known: "a" runs, then "b" resolves with the restored output instead of
  // running, and "c" gets that output.
  auto a = inline_agent(append("a"));
  auto b = inline_agent(append("b"));
  auto c = inline_agent(append("c"));
  auto graph = chain_of({{"a", a}, {"b", b}, {"c", c}});
  RunHandle run =
      finish(graph, resume({known(graph, "b", Outcome::success(make(std::string("B*"))))}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(a->calls(), 1);
  CHECK_EQ(b->calls(), 0);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("B*:c"));
  CHECK(!outcome_of(run, graph, "a").restored);
  CHECK(outcome_of(run, graph, "b").restored);
}

TEST(restore_everything_runs_no_agent) {
  auto a = inline_agent(append("a"));
  auto b = inline_agent(append("b"));
  auto graph = chain_of({{"a", a}, {"b", b}});
  RunHandle run = finish(graph, resume({known(graph, "a", Outcome::success(make(std::string("A")))),
                                        known(graph, "b", Outcome::success(make(std::string("B"))))}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(a->calls() + b->calls(), 0);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("B"));
}

TEST(restore_routed_output_goes_only_where_it_was_routed) {
  auto router = inline_agent(append("router"));
  auto x = inline_agent(append("x"));
  auto y = inline_agent(append("y"));
  GraphSpec spec;
  spec.add("router", router);
  spec.add("x", x, {"router"});
  spec.add("y", y, {"router"});
  spec.add("join", inline_agent([](const Inputs& in) { return in.items.at(0).value; }), {"x", "y"})
      .join = JoinMode::Available;
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, resume({known(graph, "router", routed(make(std::string("R")), {"y"}))}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(router->calls(), 0);
  CHECK_EQ(x->calls(), 0);
  CHECK_EQ(y->calls(), 1);
  CHECK_EQ(as_str(y->seen().at(0).values.at(0)), std::string("R"));
  auto skipped = outcome_of(run, graph, "x");
  CHECK_EQ(skipped.status, NodeStatus::Skipped);
  CHECK_EQ(std::string(skipped.skip_reason), std::string("not routed to"));
  auto r = outcome_of(run, graph, "router");
  CHECK(r.restored);
  CHECK_EQ(r.routes, (std::vector<std::string>{"y"}));
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("R:y"));
}

TEST(restore_route_to_an_unknown_successor_fails_the_node) {
  // A checkpoint from an older version of the graph may name a successor that is gone.
  auto x = inline_agent(append("x"));
  GraphSpec spec;
  spec.add("router", inline_agent(append("router")));
  spec.add("x", x, {"router"});
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish(graph, resume({known(graph, "router", routed(make(std::string("R")), {"gone"}))}));
  CHECK_EQ(run.status(), RunStatus::Failed);
  auto r = outcome_of(run, graph, "router");
  CHECK_EQ(r.status, NodeStatus::Failed);
  CHECK(contains(r.failure.message, "'gone'"));
  CHECK(contains(r.failure.message, "does not run after 'router'"));
  CHECK_EQ(x->calls(), 0);
}

TEST(restore_rejection_fails_the_node) {
  // A reviewer's rejection, restored when the run resumes: the node fails with kind
  // Rejected, the run fails, and nothing after the node runs.
  auto drafted = inline_agent(append("draft"));
  auto publish = inline_agent(append("publish"));
  GraphSpec spec;
  spec.add("draft", drafted);
  spec.add("publish", publish, {"draft"});
  auto graph = CompiledGraph::compile(spec);
  Outcome rejected =
      Outcome::failed(Failure{"rejected by reviewer: off topic", make(std::string("decision")),
                              FailureKind::Rejected});
  RunHandle run = finish(graph, resume({known(graph, "draft", rejected)}));
  CHECK_EQ(run.status(), RunStatus::Failed);
  CHECK_EQ(drafted->calls(), 0);
  CHECK_EQ(publish->calls(), 0);
  REQUIRE(run.failed_node().has_value());
  CHECK_EQ(*run.failed_node(), node_index(graph, "draft"));
  auto draft = outcome_of(run, graph, "draft");
  CHECK_EQ(draft.status, NodeStatus::Failed);
  CHECK_EQ(draft.failure.kind, FailureKind::Rejected);
  CHECK_EQ(draft.failure.message, std::string("rejected by reviewer: off topic"));
  CHECK_EQ(as_str(draft.failure.error), std::string("decision"));
  CHECK(draft.restored);
}

TEST(restore_rejection_with_continue_skips_dependents_only) {
  auto publish = inline_agent(append("publish"));
  auto other = inline_agent(append("other"));
  GraphSpec spec;
  spec.add("draft", inline_agent(append("draft"))).on_error = ErrorMode::Continue;
  spec.add("publish", publish, {"draft"});
  spec.add("other", other);
  auto graph = CompiledGraph::compile(spec);
  Outcome rejected = Outcome::failed(Failure{"rejected", {}, FailureKind::Rejected});
  RunHandle run = finish(graph, resume({known(graph, "draft", rejected)}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);  // "other" is a sink that succeeded
  CHECK_EQ(publish->calls(), 0);
  CHECK_EQ(other->calls(), 1);
  auto skipped = outcome_of(run, graph, "publish");
  CHECK_EQ(skipped.status, NodeStatus::Skipped);
  CHECK_EQ(std::string(skipped.skip_reason), std::string("a predecessor failed"));
}

TEST(restore_pending_review_pauses_the_run) {
  auto next = inline_agent(append("next"));
  GraphSpec spec;
  spec.add("draft", inline_agent(append("draft")));
  spec.add("next", next, {"draft"});
  auto graph = CompiledGraph::compile(spec);
  Outcome review;
  review.kind = Outcome::Kind::NeedsReview;
  review.output = make(std::string("draft text"));
  review.failure.message = "confidence 0.3 below 0.8";
  review.confidence = 0.3;
  RunHandle run = finish(graph, resume({known(graph, "draft", review)}));
  CHECK_EQ(run.status(), RunStatus::NeedsReview);
  auto draft = outcome_of(run, graph, "draft");
  CHECK_EQ(draft.status, NodeStatus::NeedsReview);
  CHECK_EQ(draft.confidence, 0.3);
  CHECK_EQ(as_str(draft.output), std::string("draft text"));
  CHECK_EQ(next->calls(), 0);
  CHECK_EQ(std::string(outcome_of(run, graph, "next").skip_reason),
           std::string("a predecessor awaits review"));
}

TEST(restore_usage_counts_against_the_budget) {
  auto next = inline_agent(append("next"));
  GraphSpec spec;
  spec.add("expensive", inline_agent(append("expensive")));
  spec.add("next", next, {"expensive"});
  auto graph = CompiledGraph::compile(spec);
  RunOptions options =
      resume({known(graph, "expensive", success_using(make(std::string("E")), {{"tokens", 50}}))});
  options.budget = {{"tokens", 40}};
  RunHandle run = finish(graph, std::move(options));
  CHECK_EQ(usage_of(run.usage(), "tokens"), 50.0);
  CHECK(run.budget_exhausted());
  CHECK_EQ(next->calls(), 0);
}

TEST(restore_out_of_range_node_is_ignored) {
  auto only = inline_agent(append("only"));
  GraphSpec spec;
  spec.add("only", only);
  auto graph = CompiledGraph::compile(spec);
  Restored stray;
  stray.node = 99;
  stray.outcome = Outcome::success(make(std::string("stray")));
  RunHandle run = finish(graph, resume({stray}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(only->calls(), 1);
  CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:only"));
}

TEST(restore_applies_to_its_own_run_only) {
  // Restored and fresh runs of one graph, concurrently: each gets what it was given.
  auto work = pooled_agent(milliseconds(1), append("work"));
  GraphSpec spec;
  spec.add("work", work);
  auto graph = CompiledGraph::compile(spec);
  std::vector<RunHandle> restored_runs;
  std::vector<RunHandle> fresh_runs;
  for (int i = 0; i < 10; ++i) {
    restored_runs.push_back(
        start_with(graph, resume({known(graph, "work", Outcome::success(make(std::string("R"))))})));
    fresh_runs.push_back(start_input(graph, make(std::string("in"))));
  }
  for (auto& run : restored_runs) {
    wait_end(run);
    CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("R"));
  }
  for (auto& run : fresh_runs) {
    wait_end(run);
    CHECK_EQ(as_str(run.sink_outputs().at(0).second), std::string("in:work"));
  }
  CHECK_EQ(work->calls(), 10);
}
