// Agents that only hand work to another executor (Agent::hands_off, as coroutine agents
// hand it to an event loop) are told of their predecessors' outcomes on the thread that
// resolved them, without a hop through a oneTBB worker; any other successor still goes
// through oneTBB; and however long a chain of such agents, the stack stays bounded.
#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

using namespace counterpoint;
using namespace cptest;

namespace {

// Queues each invocation for a "loop" thread of the test's own, as the bindings queue
// coroutines for an event loop, and remembers the thread each invoke() was called on.
class QueueingAgent : public TestAgent {
 public:
  explicit QueueingAgent(std::shared_ptr<HandOff<Invocation>> loop) : loop_(std::move(loop)) {}
  bool hands_off() const noexcept override { return true; }
  void invoke(Invocation invocation) override {
    record(invocation);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      invoked_on_.push_back(std::this_thread::get_id());
    }
    loop_->put(std::move(invocation));
  }
  std::vector<std::thread::id> invoked_on() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return invoked_on_;
  }

 private:
  std::shared_ptr<HandOff<Invocation>> loop_;
  mutable std::mutex mutex_;
  std::vector<std::thread::id> invoked_on_;
};

// Resolves inside invoke(), as a hand-off agent does when it cannot queue (its loop was
// closed): the next node is told before invoke() returns, so the calls nest.
class ResolvingHandOff : public InlineAgent {
 public:
  using InlineAgent::InlineAgent;
  bool hands_off() const noexcept override { return true; }
};

// Resolves `count` invocations from its own thread, as an event loop finishing
// coroutines would, passing each one's input on.
class FakeLoop {
 public:
  explicit FakeLoop(int count)
      : queue(std::make_shared<HandOff<Invocation>>()), thread_([this, count] {
          for (int i = 0; i < count; ++i) {
            Invocation invocation = queue->take();
            Payload value = invocation.inputs.items.empty() ? Payload{}
                                                            : invocation.inputs.items.front().value;
            invocation.completion.succeed(std::move(value));
          }
        }) {}
  ~FakeLoop() { thread_.join(); }
  FakeLoop(const FakeLoop&) = delete;
  FakeLoop& operator=(const FakeLoop&) = delete;
  std::thread::id id() const { return thread_.get_id(); }

  std::shared_ptr<HandOff<Invocation>> queue;

 private:
  std::thread thread_;
};

}  // namespace

TEST(hand_off_successors_are_told_on_the_resolving_thread) {
  FakeLoop loop(7);
  auto src = std::make_shared<QueueingAgent>(loop.queue);
  auto workers = std::make_shared<QueueingAgent>(loop.queue);
  auto join = std::make_shared<QueueingAgent>(loop.queue);
  GraphSpec spec;
  spec.add("src", src);
  std::vector<std::string> names;
  for (int i = 0; i < 5; ++i) {
    names.push_back("w" + std::to_string(i));
    spec.add(names.back(), workers, {"src"});
  }
  spec.add("join", join, names);
  auto graph = CompiledGraph::compile(spec);
  REQUIRE(graph->plan().nodes()[node_index(graph, "src")].successors_hand_off);

  RunHandle run = finish_input(graph, make(1));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  // The entry is told by the thread that started the run; every later agent by the
  // thread that resolved its predecessor: the loop's own.
  REQUIRE_EQ(src->invoked_on().size(), std::size_t{1});
  CHECK(src->invoked_on().front() == std::this_thread::get_id());
  REQUIRE_EQ(workers->invoked_on().size(), std::size_t{5});
  for (std::thread::id id : workers->invoked_on()) CHECK(id == loop.id());
  REQUIRE_EQ(join->invoked_on().size(), std::size_t{1});
  CHECK(join->invoked_on().front() == loop.id());
  CHECK_EQ(join->seen().front().names.size(), std::size_t{5});
}

TEST(a_successor_that_does_not_hand_off_goes_through_onetbb) {
  FakeLoop loop(2);
  auto src = std::make_shared<QueueingAgent>(loop.queue);
  auto queued = std::make_shared<QueueingAgent>(loop.queue);
  std::atomic<bool> ran_on_loop{true};
  const std::thread::id loop_thread = loop.id();
  auto plain = inline_agent([&](const Inputs& in) {
    ran_on_loop.store(std::this_thread::get_id() == loop_thread);
    return in.items.at(0).value;
  });
  GraphSpec spec;
  spec.add("src", src);
  spec.add("queued", queued, {"src"});
  spec.add("plain", plain, {"src"});
  auto graph = CompiledGraph::compile(spec);
  CHECK(!graph->plan().nodes()[node_index(graph, "src")].successors_hand_off);

  RunHandle run = finish_input(graph, make(1));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  // A plain agent runs user code: never on the thread of the loop that resolved src.
  CHECK(!ran_on_loop.load());
  REQUIRE_EQ(queued->invoked_on().size(), std::size_t{1});
  CHECK(queued->invoked_on().front() != loop_thread);
}

TEST(a_long_chain_of_hand_offs_resolving_at_once_keeps_the_stack_bounded) {
  // 20,000 nested deliveries would overflow the stack; the depth limit sends every 32nd
  // through oneTBB instead.
  constexpr int kLength = 20000;
  auto agent = std::make_shared<ResolvingHandOff>(
      [](const Inputs& in) { return make(as_int(in.items.at(0).value) + 1); });
  GraphSpec spec;
  for (int i = 0; i < kLength; ++i) {
    if (i == 0) {
      spec.add("a0", agent);
    } else {
      spec.add("a" + std::to_string(i), agent, {"a" + std::to_string(i - 1)});
    }
  }
  auto graph = CompiledGraph::compile(spec);
  RunHandle run = finish_input(graph, make(0));
  CHECK_EQ(run.status(), RunStatus::Succeeded);
  CHECK_EQ(as_int(run.sink_outputs().at(0).second), kLength);
  CHECK_EQ(agent->calls(), kLength);

  // A failure at the head skips the whole chain, node after node, just as deep.
  auto failing = lambda_agent([](Invocation inv) { inv.completion.fail(Failure{"boom", {}}); });
  GraphSpec skipped;
  skipped.on_error = ErrorMode::Continue;  // so the failure is skipped past, not fatal
  skipped.add("head", failing);
  for (int i = 0; i < kLength; ++i) {
    skipped.add("s" + std::to_string(i), agent, {i == 0 ? std::string("head") : "s" + std::to_string(i - 1)});
  }
  auto skipping = CompiledGraph::compile(skipped);
  RunHandle failed = finish_input(skipping, make(0));
  CHECK_EQ(failed.status(), RunStatus::Failed);
  CHECK_EQ(status_of(failed, skipping, "s" + std::to_string(kLength - 1)), NodeStatus::Skipped);
}
