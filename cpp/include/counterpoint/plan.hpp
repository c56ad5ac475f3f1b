#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/graph_spec.hpp"

namespace counterpoint {

// A validated, immutable graph: nodes in topological order, edges as indices.
// Shared read-only by every run of a compiled graph.
struct PlanNode {
  std::string name;
  // What runs: the declared agent, wrapped in a PolicyAgent when the spec has a policy.
  std::shared_ptr<Agent> agent;
  std::vector<std::uint32_t> predecessors;  // in declaration order
  std::vector<std::uint32_t> successors;
  // The declared priority, or, for a node declared without one, the highest of its
  // predecessors' priorities (0 for an entry).
  int priority = 0;
  JoinMode join = JoinMode::All;
  ErrorMode on_error = ErrorMode::FailRun;  // resolved against the graph's mode
  // agent->hands_off(), asked once here rather than in every run: the node can be told
  // on the thread that starts the run or resolves its predecessors (FlowGraph::forward).
  bool hands_off = false;
  bool successors_hand_off = false;  // every successor hands_off

};

class Plan {
 public:
  // Throws GraphError naming the node and the problem: empty graph, empty or duplicate
  // name, a name containing '/', missing agent, unknown or repeated predecessor, cycle,
  // an invalid policy.
  static std::shared_ptr<const Plan> build(const GraphSpec& spec);

  const std::vector<PlanNode>& nodes() const noexcept { return nodes_; }
  const std::vector<std::uint32_t>& entries() const noexcept { return entries_; }
  const std::vector<std::uint32_t>& sinks() const noexcept { return sinks_; }
  std::size_t size() const noexcept { return nodes_.size(); }
  // Index of `name`, or -1.
  std::int64_t find(const std::string& name) const;
  // {"nodes": [{"name", "after", "priority"}...], "entries": [...], "sinks": [...]}
  std::string to_json() const;

 private:
  std::vector<PlanNode> nodes_;
  std::vector<std::uint32_t> entries_;
  std::vector<std::uint32_t> sinks_;
};

}  // namespace counterpoint
