#pragma once
// oneTBB plumbing: one static flow graph per compiled graph, shared by all of its runs.
//
// Every agent is an async_node<Message, Message>. A message names one run's state and
// the node that sent it; joins are counted per run in that state, so a node dispatches
// once its join is satisfied for that run. The node body only hands the invocation to
// the agent's executor and returns, so no TBB worker waits on agent work; completion
// comes back through the node's gateway (try_put + release_wait) from whatever thread
// finished the agent. Static node priorities order ready work across all runs.
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <oneapi/tbb/flow_graph.h>

#include "detail/run_state.hpp"
#include "detail/tsan.hpp"
#include "counterpoint/plan.hpp"

namespace counterpoint::detail {

struct Message {
  Message() = default;
  Message(std::shared_ptr<RunState> run_, std::uint32_t from_) : run(std::move(run_)), from(from_) {
    tsan::handoff_release();
  }
  // oneTBB copies the message into the task another thread will run; the copy is its
  // last write before the hand-off, so announce the hand-off after it (see tsan.hpp).
  Message(const Message& other) : run(other.run), from(other.from) { tsan::handoff_release(); }
  Message(Message&& other) noexcept : run(std::move(other.run)), from(other.from) {
    tsan::handoff_release();
  }
  Message& operator=(const Message& other) {
    if (this == &other) return *this;
    run = other.run;
    from = other.from;
    tsan::handoff_release();
    return *this;
  }
  Message& operator=(Message&& other) noexcept {
    run = std::move(other.run);
    from = other.from;
    tsan::handoff_release();
    return *this;
  }

  std::shared_ptr<RunState> run;
  std::uint32_t from = kStartSignal;
};

class FlowGraph {
 public:
  using Node = tbb::flow::async_node<Message, Message>;

  // Builds the graph inside the runtime's arena. Destroy only through make(): the last
  // reference may be dropped inside one of this graph's own tasks.
  static std::shared_ptr<FlowGraph> make(std::shared_ptr<const Plan> plan);
  ~FlowGraph();

  const Plan& plan() const noexcept { return *plan_; }
  void start(const std::shared_ptr<RunState>& run);
  // Tells the node's successors, for this run, that it has resolved.
  void forward(const std::shared_ptr<RunState>& run, std::uint32_t node);
  Node::gateway_type& gateway(std::uint32_t node) { return nodes_[node]->gateway(); }
  // How many events the last root run of this graph that recorded events recorded, its
  // child runs' included: the room its next one's queue starts with (RunState::event_room).
  // Two per agent undercounts a graph whose agents are graphs, and growing the queue
  // moved every event recorded so far under the queue's lock, at each doubling.
  std::uint32_t events_last_run() const noexcept {
    return events_last_run_.load(std::memory_order_relaxed);
  }
  void set_events_last_run(std::uint32_t count) noexcept {
    events_last_run_.store(count, std::memory_order_relaxed);
  }

 private:
  explicit FlowGraph(std::shared_ptr<const Plan> plan);
  void on_message(std::uint32_t node, const Message& message);
  void dispatch(std::uint32_t node, const std::shared_ptr<RunState>& run, Inputs inputs);
  void skip(std::uint32_t node, const std::shared_ptr<RunState>& run, const char* reason);

  std::shared_ptr<const Plan> plan_;
  std::unique_ptr<tbb::flow::graph> graph_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::atomic<std::uint32_t> events_last_run_{0};
};

}  // namespace counterpoint::detail
