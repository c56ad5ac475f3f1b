#pragma once
// oneTBB plumbing: one static flow graph per compiled graph, shared by all of its runs.
//
// Every agent is an async_node<RunRef, RunRef>. A message is a reference to one run's
// state; fan-in is counted per run in that state, so a node dispatches once all of the
// run's predecessors have delivered. The node body only hands the invocation to the
// agent's executor and returns, so no TBB worker waits on agent work; completion comes
// back through the node's gateway (try_put + release_wait) from whatever thread
// finished the agent.
#include <cstdint>
#include <memory>
#include <vector>

#include <oneapi/tbb/flow_graph.h>

#include "counterpoint/detail/run_state.hpp"
#include "counterpoint/plan.hpp"

namespace counterpoint::detail {

class FlowGraph {
 public:
  using RunRef = std::shared_ptr<RunState>;
  using Node = tbb::flow::async_node<RunRef, RunRef>;

  // Builds the graph inside the runtime's arena. Destroy only through make(): the last
  // reference may be dropped inside one of this graph's own tasks.
  static std::shared_ptr<FlowGraph> make(std::shared_ptr<const Plan> plan);
  ~FlowGraph();

  const Plan& plan() const noexcept { return *plan_; }
  void start(const RunRef& run);
  Node::gateway_type& gateway(std::uint32_t node) { return nodes_[node]->gateway(); }
  bool has_successors(std::uint32_t node) const noexcept {
    return !plan_->nodes()[node].successors.empty();
  }

 private:
  explicit FlowGraph(std::shared_ptr<const Plan> plan);
  void on_message(std::uint32_t node, const RunRef& run, Node::gateway_type& gateway);

  std::shared_ptr<const Plan> plan_;
  std::unique_ptr<tbb::flow::graph> graph_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

}  // namespace counterpoint::detail
