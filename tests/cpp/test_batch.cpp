// Batch: one run per input with a bounded window, refilled by the threads that end runs;
// every input comes back once with its index, failures stay with their run, and a
// cancelled batch still accounts for every input.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "counterpoint/counterpoint.hpp"
#include "test_agents.hpp"
#include "test_harness.hpp"

using namespace counterpoint;
using namespace cptest;
using std::chrono::milliseconds;
using std::chrono::seconds;

namespace {

// Takes everything the batch returns, for at most `limit`.
std::vector<Batch::Finished> drain(Batch& batch, milliseconds limit = milliseconds(30000)) {
  std::vector<Batch::Finished> all;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (batch.next(all, milliseconds(20))) {
    if (std::chrono::steady_clock::now() > deadline) {
      report_failure(__FILE__, __LINE__, "the batch did not finish in time");
      break;
    }
  }
  return all;
}

BatchOptions inputs_from(std::vector<int> values, std::size_t window = 0) {
  BatchOptions options;
  options.window = window;
  auto shared = std::make_shared<std::vector<int>>(std::move(values));
  options.make_options = [shared](std::size_t index) {
    RunOptions run;
    run.input = make(shared->at(index));
    return run;
  };
  return options;
}

std::shared_ptr<CompiledGraph> doubling_graph(std::shared_ptr<Agent> agent) {
  GraphSpec spec;
  spec.add("double", std::move(agent));
  return CompiledGraph::compile(spec);
}

}  // namespace

TEST(batch_returns_every_index_with_its_run) {
  constexpr int kItems = 200;
  auto graph = doubling_graph(inline_agent([](const Inputs& in) {
    return make(as_int(in.items.at(0).value) * 2);
  }));
  std::vector<int> values;
  for (int i = 0; i < kItems; ++i) values.push_back(i + 1000);
  Batch batch(graph, values.size(), inputs_from(values, 16));
  auto all = drain(batch);
  REQUIRE_EQ(all.size(), std::size_t{kItems});
  std::set<std::size_t> seen;
  for (const auto& finished : all) {
    REQUIRE(finished.run);
    CHECK(finished.error.empty());
    CHECK_EQ(finished.run.status(), RunStatus::Succeeded);
    CHECK_EQ(as_int(finished.run.sink_outputs().at(0).second),
             static_cast<int>(2 * (finished.index + 1000)));
    seen.insert(finished.index);
  }
  CHECK_EQ(seen.size(), std::size_t{kItems});
  CHECK(batch.done());
  std::vector<Batch::Finished> none;
  CHECK(!batch.next(none, milliseconds(10)));
  CHECK(none.empty());
}

TEST(batch_respects_its_window) {
  constexpr int kItems = 40;
  constexpr std::size_t kWindow = 3;
  auto concurrency = std::make_shared<Concurrency>();
  auto graph = doubling_graph(lambda_agent([concurrency](Invocation inv) {
    concurrency->enter();
    auto shared = std::make_shared<Invocation>(std::move(inv));
    Runtime::instance().pool().submit([concurrency, shared] {
      std::this_thread::sleep_for(milliseconds(5));
      concurrency->leave();
      shared->completion.succeed(shared->inputs.items.at(0).value);
    });
  }));
  Batch batch(graph, kItems, inputs_from(std::vector<int>(kItems, 1), kWindow));
  CHECK_EQ(batch.window(), kWindow);
  auto all = drain(batch);
  CHECK_EQ(all.size(), std::size_t{kItems});
  CHECK(batch.most_in_flight() <= kWindow);
  CHECK(concurrency->most.load() <= static_cast<int>(kWindow));
  CHECK(concurrency->most.load() >= 2);  // the window is used, not serialized
}

TEST(batch_default_window_bounds_memory) {
  auto graph = doubling_graph(inline_agent([](const Inputs& in) { return in.items.at(0).value; }));
  BatchOptions options = inputs_from(std::vector<int>(3000, 7));
  Batch batch(graph, 3000, std::move(options));
  CHECK_EQ(batch.window(), BatchOptions::kDefaultWindow);
  auto all = drain(batch);
  CHECK_EQ(all.size(), std::size_t{3000});
  CHECK(batch.most_in_flight() <= BatchOptions::kDefaultWindow);
}

// next(..., at_least) sleeps until that many runs have finished, takes fewer only when
// fewer remain or the timeout passes, and a timed-out wait still returns what is there.
TEST(batch_next_waits_for_a_group) {
  constexpr std::size_t kItems = 50;
  auto graph = doubling_graph(pooled_agent(milliseconds(2), [](const Inputs& in) {
    return in.items.at(0).value;
  }));
  Batch batch(graph, kItems, inputs_from(std::vector<int>(kItems, 1), 4));
  std::vector<Batch::Finished> got;
  std::size_t groups = 0;
  while (batch.next(got, seconds(30), 16)) {
    ++groups;
    // Every group but the last holds at least 16 runs; the last holds the rest.
    if (got.size() < kItems) CHECK(got.size() >= 16 * groups);
  }
  CHECK_EQ(got.size(), kItems);
  CHECK(groups <= kItems / 16 + 1);

  // A group larger than the batch is capped at what remains; a short timeout returns
  // whatever finished so far, perhaps nothing, without waiting for the whole group.
  auto slow = doubling_graph(pooled_agent(milliseconds(200), [](const Inputs& in) {
    return in.items.at(0).value;
  }));
  Batch pending(slow, 3, inputs_from(std::vector<int>(3, 1)));
  std::vector<Batch::Finished> early;
  const auto started = std::chrono::steady_clock::now();
  CHECK(pending.next(early, milliseconds(20), 1000));
  CHECK(std::chrono::steady_clock::now() - started < milliseconds(150));
  CHECK(early.size() < 3);
  while (pending.next(early, seconds(30), 1000)) {
  }
  CHECK_EQ(early.size(), std::size_t{3});
}

// The caller never calls next(): the threads that end runs start the next ones.
TEST(batch_refills_without_the_caller) {
  constexpr int kItems = 30;
  auto graph = doubling_graph(pooled_agent(milliseconds(1), [](const Inputs& in) {
    return in.items.at(0).value;
  }));
  Batch batch(graph, kItems, inputs_from(std::vector<int>(kItems, 1), 2));
  CHECK(eventually([&] { return batch.done(); }, milliseconds(20000)));
  CHECK_EQ(batch.started(), std::size_t{kItems});
  CHECK_EQ(drain(batch).size(), std::size_t{kItems});
}

TEST(batch_failures_stay_with_their_run) {
  constexpr int kItems = 20;
  auto graph = doubling_graph(lambda_agent([](Invocation inv) {
    const int value = as_int(inv.inputs.items.at(0).value);
    if (value % 2 == 1) {
      inv.completion.fail(Failure{"odd", {}});
    } else {
      inv.completion.succeed(make(value));
    }
  }));
  std::vector<int> values;
  for (int i = 0; i < kItems; ++i) values.push_back(i);
  BatchOptions options = inputs_from(values, 4);
  auto inner = options.make_options;
  options.make_options = [inner](std::size_t index) {
    if (index == 6) throw std::runtime_error("no options for item 6");
    return inner(index);
  };
  Batch batch(graph, kItems, std::move(options));
  auto all = drain(batch);
  REQUIRE_EQ(all.size(), std::size_t{kItems});
  for (const auto& finished : all) {
    if (finished.index == 6) {
      CHECK(!finished.run);
      CHECK_EQ(finished.error, std::string("no options for item 6"));
    } else if (finished.index % 2 == 1) {
      CHECK_EQ(finished.run.status(), RunStatus::Failed);
    } else {
      CHECK_EQ(finished.run.status(), RunStatus::Succeeded);
    }
  }
}

// Durable runs need per-item options: a key, a node hook, an observer of their own.
TEST(batch_per_item_options_and_observers) {
  constexpr int kItems = 12;
  auto observer = std::make_shared<CountingObserver>();
  auto graph = doubling_graph(inline_agent([](const Inputs& in) { return in.items.at(0).value; }));
  BatchOptions options;
  options.window = 5;
  // Callbacks may outlive the batch object: they own what they use.
  auto calls = std::make_shared<std::atomic<std::size_t>>(0);
  auto in_order = std::make_shared<std::atomic<bool>>(true);
  options.make_options = [calls, in_order, observer](std::size_t index) {
    if (calls->fetch_add(1) != index) in_order->store(false);
    RunOptions run;
    run.input = make(static_cast<int>(index));
    run.key = "item-" + std::to_string(index);
    run.observer = observer;
    return run;
  };
  auto ready = std::make_shared<std::atomic<int>>(0);
  options.on_ready = [ready] { ready->fetch_add(1); };
  Batch batch(graph, kItems, std::move(options));
  auto all = drain(batch);
  REQUIRE_EQ(all.size(), std::size_t{kItems});
  for (const auto& finished : all) {
    CHECK_EQ(finished.run.key(), "item-" + std::to_string(finished.index));
  }
  CHECK_EQ(observer->calls(), kItems);
  CHECK_EQ(calls->load(), std::size_t{kItems});
  CHECK(in_order->load());
  CHECK(ready->load() >= 1);
}

TEST(batch_cancel_accounts_for_every_input) {
  constexpr int kItems = 20;
  auto graph = doubling_graph(lambda_agent([](Invocation inv) {
    auto shared = std::make_shared<Invocation>(std::move(inv));
    // Ends only when its run does.
    shared->completion.when_run_ends([shared] {
      Runtime::instance().pool().submit([shared] { shared->completion.cancelled(); });
    });
  }));
  Batch batch(graph, kItems, inputs_from(std::vector<int>(kItems, 1), 4));
  CHECK(eventually([&] { return batch.in_flight() == 4; }));
  const auto started = std::chrono::steady_clock::now();
  batch.cancel();
  batch.cancel();  // idempotent
  auto all = drain(batch, milliseconds(10000));
  CHECK(std::chrono::steady_clock::now() - started < seconds(5));
  REQUIRE_EQ(all.size(), std::size_t{kItems});
  int cancelled_runs = 0;
  int never_started = 0;
  std::set<std::size_t> seen;
  for (const auto& finished : all) {
    seen.insert(finished.index);
    if (finished.run) {
      CHECK_EQ(finished.run.status(), RunStatus::Cancelled);
      ++cancelled_runs;
    } else {
      CHECK_EQ(finished.error, std::string("cancelled"));
      ++never_started;
    }
  }
  CHECK_EQ(seen.size(), std::size_t{kItems});
  CHECK_EQ(cancelled_runs, 4);
  CHECK_EQ(never_started, kItems - 4);
}

TEST(batch_dropped_early_cancels_its_runs) {
  auto parked = std::make_shared<std::atomic<int>>(0);
  auto graph = doubling_graph(lambda_agent([parked](Invocation inv) {
    parked->fetch_add(1);
    auto shared = std::make_shared<Invocation>(std::move(inv));
    shared->completion.when_run_ends([shared] {
      Runtime::instance().pool().submit([shared] { shared->completion.cancelled(); });
    });
  }));
  const std::size_t before = Runtime::instance().live_runs();
  {
    Batch batch(graph, 50, inputs_from(std::vector<int>(50, 1), 8));
    CHECK(eventually([&] { return parked->load() == 8; }));
  }
  CHECK(eventually([&] { return Runtime::instance().live_runs() <= before; }));
  std::this_thread::sleep_for(milliseconds(20));
  CHECK_EQ(parked->load(), 8);  // nothing new started after the batch was dropped
}

TEST(batch_of_nothing) {
  auto graph = doubling_graph(inline_agent([](const Inputs& in) { return in.items.at(0).value; }));
  Batch batch(graph, 0, inputs_from({}));
  std::vector<Batch::Finished> out;
  CHECK(!batch.next(out, milliseconds(10)));
  CHECK(out.empty());
  CHECK(batch.done());
  CHECK_THROWS(EngineError, Batch(graph, 1, BatchOptions{}));
  CHECK_THROWS(EngineError, Batch(nullptr, 1, inputs_from({1})));
}
