#include "counterpoint/plan.hpp"

#include <algorithm>
#include <unordered_map>

#include "counterpoint/errors.hpp"

namespace counterpoint {

namespace {

// Finds one cycle among `remaining` (nodes Kahn's algorithm could not order) by
// following predecessor edges from `start`. `start` itself may merely hang off a cycle,
// so the cycle is returned rotated to begin at its earliest-declared node: the one the
// error names, so the message never blames a node that is not on the cycle.
std::vector<std::uint32_t> find_cycle(const std::vector<PlanNode>& nodes,
                                      const std::vector<bool>& remaining, std::uint32_t start) {
  std::vector<int> seen_at(nodes.size(), -1);
  std::vector<std::uint32_t> path;
  std::uint32_t current = start;
  // Every remaining node has a remaining predecessor (else Kahn would have ordered it),
  // so this walk always ends by revisiting a node.
  while (seen_at[current] < 0) {
    seen_at[current] = static_cast<int>(path.size());
    path.push_back(current);
    for (std::uint32_t pred : nodes[current].predecessors) {
      if (remaining[pred]) {
        current = pred;
        break;
      }
    }
  }
  std::vector<std::uint32_t> cycle(path.begin() + seen_at[current], path.end());
  std::reverse(cycle.begin(), cycle.end());  // predecessor walk -> edge direction
  std::rotate(cycle.begin(), std::min_element(cycle.begin(), cycle.end()), cycle.end());
  return cycle;
}

// "a -> b -> c -> a"
std::string describe_cycle(const std::vector<PlanNode>& nodes,
                           const std::vector<std::uint32_t>& cycle) {
  std::string text;
  for (std::uint32_t n : cycle) text += nodes[n].name + " -> ";
  return text + nodes[cycle.front()].name;
}

}  // namespace

std::shared_ptr<const Plan> Plan::build(const GraphSpec& spec) {
  if (spec.nodes.empty()) {
    throw GraphError("", "the graph has no agents; add at least one before compiling");
  }
  std::unordered_map<std::string, std::uint32_t> index;
  index.reserve(spec.nodes.size());
  for (std::uint32_t i = 0; i < spec.nodes.size(); ++i) {
    const NodeSpec& node = spec.nodes[i];
    if (node.name.empty()) {
      throw GraphError("", "agent #" + std::to_string(i + 1) +
                               " has an empty name; give every agent a unique, non-empty name");
    }
    if (!index.emplace(node.name, i).second) {
      throw GraphError(node.name, "the name is used by more than one agent; names must be unique");
    }
    if (!node.agent) {
      throw GraphError(node.name, "no agent to run; pass a callable");
    }
  }

  auto plan = std::make_shared<Plan>();
  std::vector<PlanNode> declared(spec.nodes.size());
  for (std::uint32_t i = 0; i < spec.nodes.size(); ++i) {
    const NodeSpec& node = spec.nodes[i];
    PlanNode& out = declared[i];
    out.name = node.name;
    out.agent = node.agent;
    out.priority = node.priority;
    out.join = node.join;
    const ErrorMode graph_mode =
        spec.on_error == ErrorMode::Inherit ? ErrorMode::FailRun : spec.on_error;
    out.on_error = node.on_error == ErrorMode::Inherit ? graph_mode : node.on_error;
    for (const std::string& pred : node.after) {
      auto found = index.find(pred);
      if (found == index.end()) {
        throw GraphError(node.name, "runs after '" + pred + "', but no agent has that name; add '" +
                                        pred + "' or correct the name in `after`");
      }
      if (found->second == i) {
        throw GraphError(node.name, "runs after itself; remove '" + pred + "' from its `after`");
      }
      if (std::find(out.predecessors.begin(), out.predecessors.end(), found->second) !=
          out.predecessors.end()) {
        throw GraphError(node.name, "lists '" + pred + "' more than once in `after`");
      }
      out.predecessors.push_back(found->second);
    }
  }

  // Kahn's algorithm, taking ready nodes in declaration order so the plan is stable.
  std::vector<std::uint32_t> missing(declared.size());
  std::vector<std::vector<std::uint32_t>> successors(declared.size());
  for (std::uint32_t i = 0; i < declared.size(); ++i) {
    missing[i] = static_cast<std::uint32_t>(declared[i].predecessors.size());
    for (std::uint32_t pred : declared[i].predecessors) successors[pred].push_back(i);
  }
  std::vector<std::uint32_t> order;
  order.reserve(declared.size());
  for (std::uint32_t i = 0; i < declared.size(); ++i) {
    if (missing[i] == 0) order.push_back(i);
  }
  for (std::size_t head = 0; head < order.size(); ++head) {
    for (std::uint32_t succ : successors[order[head]]) {
      if (--missing[succ] == 0) order.push_back(succ);
    }
  }
  if (order.size() != declared.size()) {
    std::vector<bool> remaining(declared.size(), true);
    for (std::uint32_t n : order) remaining[n] = false;
    std::uint32_t first = 0;
    while (!remaining[first]) ++first;
    const std::vector<std::uint32_t> cycle = find_cycle(declared, remaining, first);
    throw GraphError(declared[cycle.front()].name,
                     "is part of a cycle (" + describe_cycle(declared, cycle) +
                         "); agents must form a directed acyclic graph");
  }

  std::vector<std::uint32_t> position(declared.size());
  for (std::uint32_t pos = 0; pos < order.size(); ++pos) position[order[pos]] = pos;
  plan->nodes_.resize(declared.size());
  for (std::uint32_t old = 0; old < declared.size(); ++old) {
    PlanNode node = std::move(declared[old]);
    for (auto& pred : node.predecessors) pred = position[pred];
    plan->nodes_[position[old]] = std::move(node);
  }
  for (std::uint32_t i = 0; i < plan->nodes_.size(); ++i) {
    PlanNode& node = plan->nodes_[i];
    for (std::uint32_t pred : node.predecessors) plan->nodes_[pred].successors.push_back(i);
    // Work downstream of an urgent branch is urgent too: a node without a priority of
    // its own inherits the highest of its predecessors' (nodes are in topological order).
    if (node.priority == 0) {
      for (std::uint32_t pred : node.predecessors) {
        node.priority = std::max(node.priority, plan->nodes_[pred].priority);
      }
    }
  }
  for (std::uint32_t i = 0; i < plan->nodes_.size(); ++i) {
    if (plan->nodes_[i].predecessors.empty()) plan->entries_.push_back(i);
    if (plan->nodes_[i].successors.empty()) plan->sinks_.push_back(i);
  }
  // Runs start their most urgent entries first.
  std::stable_sort(plan->entries_.begin(), plan->entries_.end(), [&](std::uint32_t a, std::uint32_t b) {
    return plan->nodes_[a].priority > plan->nodes_[b].priority;
  });
  return plan;
}

std::int64_t Plan::find(const std::string& name) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].name == name) return static_cast<std::int64_t>(i);
  }
  return -1;
}

}  // namespace counterpoint
