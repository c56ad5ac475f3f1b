// An agent publishes events of its own into its run's event queue while it runs
// (EventChannel: the data it reports, the chunks a model streams), named by its path
// from the root run, in order with the engine's own events; a channel outliving its run,
// or of a run that records no events, publishes nothing and keeps nothing alive.
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;

namespace {

// Publishes two custom events and a message, then succeeds with its input.
std::shared_ptr<LambdaAgent> publishing(std::shared_ptr<EventChannel> kept = nullptr) {
  return lambda_agent([kept](Invocation inv) {
    EventChannel channel = inv.completion.channel();
    if (kept) *kept = channel;
    channel.publish(EventKind::Custom, make(std::string("first")));
    channel.publish(EventKind::Message, make(std::string("token")), "model");
    channel.publish(EventKind::Custom, make(std::string("second")));
    inv.completion.succeed(inv.inputs.items.at(0).value);
  });
}

std::vector<std::string> kinds_and_agents(const std::vector<Event>& events) {
  std::vector<std::string> out;
  for (const Event& e : events) out.push_back(std::string(to_string(e.kind)) + ":" + e.agent);
  return out;
}

RunOptions recording(Payload input) {
  RunOptions options;
  options.input = std::move(input);
  options.record_events = EventKinds::all();
  return options;
}

}  // namespace

TEST(channel_events_come_in_order_between_start_and_finish) {
  auto graph = chain_of({{"talker", publishing()}});
  RunHandle run = graph->start(recording(make(1)));
  std::vector<Event> events = drain_events(run);
  CHECK_EQ(kinds_and_agents(events),
           (std::vector<std::string>{"start:talker", "custom:talker", "message:talker",
                                     "custom:talker", "finish:talker"}));
  CHECK_EQ(as_str(events[1].payload), std::string("first"));
  CHECK_EQ(events[2].message, std::string("model"));
  CHECK_EQ(as_str(events[3].payload), std::string("second"));
  CHECK_EQ(events[1].run_id, run.id());
}

TEST(channel_events_of_a_child_run_carry_the_agent_path) {
  auto child = chain_of({{"inner", publishing()}});
  auto graph = chain_of({{"outer", lambda_agent([child](Invocation inv) {
                            CHECK_EQ(inv.completion.agent_path(), std::string("outer"));
                            inv.completion.delegate(child, inv.inputs.items.at(0).value);
                          })}});
  RunHandle run = graph->start(recording(make(2)));
  std::vector<Event> events = drain_events(run);
  std::vector<std::string> custom;
  for (const Event& e : events) {
    if (e.kind == EventKind::Custom) custom.push_back(e.agent);
    CHECK_EQ(e.run_id, run.id());  // the root run's queue and id
  }
  CHECK_EQ(custom, (std::vector<std::string>{"outer/inner", "outer/inner"}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
}

TEST(agent_path_names_the_agent_in_a_child_run) {
  std::string seen;
  auto child = chain_of({{"inner", lambda_agent([&seen](Invocation inv) {
                            seen = inv.completion.agent_path();
                            inv.completion.succeed(make(0));
                          })}});
  auto graph = chain_of({{"outer", lambda_agent([child](Invocation inv) {
                            inv.completion.delegate(child, inv.inputs.items.at(0).value);
                          })}});
  finish_input(graph, make(0));
  CHECK_EQ(seen, std::string("outer/inner"));
}

TEST(a_run_that_records_no_events_publishes_nothing) {
  bool published = true;
  auto graph = chain_of({{"quiet", lambda_agent([&published](Invocation inv) {
                            published = inv.completion.channel().publish(
                                EventKind::Custom, make(std::string("lost")));
                            inv.completion.succeed(make(0));
                          })}});
  RunHandle run = finish_input(graph, make(0));
  CHECK(!published);
  CHECK_EQ(run.status(), RunStatus::Succeeded);
}

TEST(a_channel_kept_past_its_run_publishes_nothing_and_holds_nothing) {
  auto kept = std::make_shared<EventChannel>();
  auto graph = chain_of({{"talker", publishing(kept)}});
  {
    RunHandle run = graph->start(recording(make(3)));
    drain_events(run);
    // Ended: its reader may have taken the last events, so nothing more is queued.
    CHECK(!kept->publish(EventKind::Custom, make(std::string("late"))));
  }
  // The run's handle is gone: the channel alone must not keep the run alive.
  CHECK(!kept->publish(EventKind::Custom, make(std::string("later"))));
  CHECK(!EventChannel().publish(EventKind::Custom, make(1)));
}

TEST(a_run_records_only_the_kinds_it_was_asked_for_at_every_depth) {
  auto child = chain_of({{"inner", publishing()}});
  auto graph = chain_of({{"outer", lambda_agent([child](Invocation inv) {
                            inv.completion.delegate(child, inv.inputs.items.at(0).value);
                          })},
                         {"last", publishing()}});
  RunOptions finishes = recording(make(3));
  finishes.record_events = {EventKind::Finish};
  RunHandle run = graph->start(std::move(finishes));
  CHECK_EQ(kinds_and_agents(drain_events(run)),
           (std::vector<std::string>{"finish:outer/inner", "finish:outer", "finish:last"}));

  RunOptions published = recording(make(4));
  published.record_events = {EventKind::Custom};
  run = graph->start(std::move(published));
  CHECK_EQ(kinds_and_agents(drain_events(run)),
           (std::vector<std::string>{"custom:outer/inner", "custom:outer/inner", "custom:last",
                                     "custom:last"}));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
}

TEST(event_kinds_is_a_set) {
  constexpr EventKinds none;
  CHECK(none.none());
  constexpr EventKinds two{EventKind::Start, EventKind::Message};
  CHECK(two.contains(EventKind::Start) && two.contains(EventKind::Message));
  CHECK(!two.contains(EventKind::Finish) && !two.none());
  CHECK(two.with(EventKind::Finish).contains(EventKind::Finish));
  for (EventKind kind : {EventKind::Start, EventKind::Finish, EventKind::Error, EventKind::Cancel,
                         EventKind::Skip, EventKind::Review, EventKind::Custom,
                         EventKind::Message}) {
    CHECK(EventKinds::all().contains(kind));
  }
  CHECK(EventKinds{EventKind::Skip} == EventKinds{}.with(EventKind::Skip));
}

TEST(results_are_reordered_by_priority_only_among_results_that_cannot_cause_one_another) {
  auto value = [](int v) { return inline_agent([v](const Inputs&) { return make(v); }); };
  auto child = chain_of({{"x", value(1)}});
  GraphSpec spec;
  spec.add("root", value(0));
  spec.add("lo", value(2), {"root"}, 1);
  spec.add("hi", value(3), {"root"}, 9);
  spec.add("after_lo", value(4), {"lo"}, 8);
  spec.add("sub", lambda_agent([child](Invocation inv) {
             inv.completion.delegate(child, inv.inputs.items.at(0).value);
           }), {"root"}, 7);
  auto graph = CompiledGraph::compile(spec);
  for (EventKinds kinds : {EventKinds::all(), EventKinds{EventKind::Finish}}) {
    RunOptions options = recording(make(5));
    options.record_events = kinds;
    RunHandle run = graph->start(std::move(options));
    std::vector<Event> events;
    // One batch, taken once the run has ended: every result in it was ready together.
    REQUIRE(run.wait_for(std::chrono::seconds(30)));
    CHECK(!run.next_events(events, std::chrono::nanoseconds(0)));
    std::vector<std::string> finishes;
    for (const Event& e : events) {
      if (e.kind == EventKind::Finish) finishes.push_back(e.agent);
    }
    const auto at = [&](const std::string& name) {
      return std::find(finishes.begin(), finishes.end(), name) - finishes.begin();
    };
    REQUIRE_EQ(finishes.size(), std::size_t{6});
    CHECK_EQ(at("root"), 0);                // everything follows from it
    CHECK(at("lo") < at("after_lo"));       // its cause, though of lower priority
    CHECK(at("sub/x") < at("sub"));         // a child run's result, before the delegator's
  }
}
