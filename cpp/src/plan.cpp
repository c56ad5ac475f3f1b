#include "counterpoint/plan.hpp"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "counterpoint/errors.hpp"
#include "counterpoint/policy_agent.hpp"

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

void check_number(const std::string& node, const char* field, double value, double lowest,
                  const char* expected) {
  if (!(value >= lowest) || !std::isfinite(value)) {
    throw GraphError(node, std::string("policy ") + field + " must be " + expected + ", got " +
                               std::to_string(value));
  }
}

// Problems a policy would only show once the agent runs (a NaN timeout never fires, a
// null limit crashes) are reported at compile time, naming the agent.
void check_policy(const std::string& node, const AgentPolicy& policy) {
  const RetryPolicy& retry = policy.retry;
  if (retry.max_attempts < 1) {
    throw GraphError(node, "policy retry max_attempts must be at least 1 (1 = no retry)");
  }
  check_number(node, "retry initial_backoff", retry.initial_backoff, 0.0, "a finite number >= 0");
  check_number(node, "retry multiplier", retry.multiplier, 1.0, "a finite number >= 1");
  check_number(node, "retry max_backoff", retry.max_backoff, 0.0, "a finite number >= 0");
  if (retry.jitter < 0.0 || retry.jitter > 1.0 || std::isnan(retry.jitter)) {
    throw GraphError(node, "policy retry jitter must be between 0 and 1, got " +
                               std::to_string(retry.jitter));
  }
  check_number(node, "timeout", policy.timeout, 0.0, "a finite number of seconds >= 0 (0 = none)");
  for (const auto& limit : policy.limits) {
    if (!limit) throw GraphError(node, "policy has an empty limit; pass a Limiter or remove it");
  }
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
    if (node.name.find('/') != std::string::npos) {
      throw GraphError(node.name,
                       "the name contains '/', which separates the agents of nested graphs in "
                       "event paths ('outer/inner'); rename it, e.g. with '.' or '_' instead");
    }
    if (!index.emplace(node.name, i).second) {
      throw GraphError(node.name, "the name is used by more than one agent; names must be unique");
    }
    if (!node.agent) {
      throw GraphError(node.name, "no agent to run; pass a callable");
    }
    if (node.policy) check_policy(node.name, *node.policy);
  }

  auto plan = std::make_shared<Plan>();
  std::vector<PlanNode> declared(spec.nodes.size());
  for (std::uint32_t i = 0; i < spec.nodes.size(); ++i) {
    const NodeSpec& node = spec.nodes[i];
    PlanNode& out = declared[i];
    out.name = node.name;
    out.agent = node.policy ? std::make_shared<PolicyAgent>(node.agent, *node.policy) : node.agent;
    if (node.wrap) out.agent = node.wrap(out.agent);
    out.priority = node.priority.value_or(0);
    out.join = node.join;
    const ErrorMode graph_mode =
        spec.on_error == ErrorMode::Inherit ? ErrorMode::FailRun : spec.on_error;
    out.on_error = node.on_error == ErrorMode::Inherit ? graph_mode : node.on_error;
    for (const std::string& pred : node.after) {
      auto found = index.find(pred);
      if (found == index.end()) {
        std::string problem = "runs after '" + pred;
        problem += "', but no agent has that name; add '";
        problem += pred;
        problem += "' or correct the name in `after`";
        throw GraphError(node.name, problem);
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

  // Which nodes declared a priority, by declaration index (inheritance below needs it).
  std::vector<bool> explicit_priority(declared.size());
  for (std::uint32_t i = 0; i < spec.nodes.size(); ++i) {
    explicit_priority[i] = spec.nodes[i].priority.has_value();
  }
  std::vector<std::uint32_t> position(declared.size());
  for (std::uint32_t pos = 0; pos < order.size(); ++pos) position[order[pos]] = pos;
  plan->nodes_.resize(declared.size());
  std::vector<bool> inherits(declared.size());
  for (std::uint32_t old = 0; old < declared.size(); ++old) {
    PlanNode node = std::move(declared[old]);
    for (auto& pred : node.predecessors) pred = position[pred];
    inherits[position[old]] = !explicit_priority[old];
    plan->nodes_[position[old]] = std::move(node);
  }
  for (std::uint32_t i = 0; i < plan->nodes_.size(); ++i) {
    PlanNode& node = plan->nodes_[i];
    for (std::uint32_t pred : node.predecessors) plan->nodes_[pred].successors.push_back(i);
    // Work downstream of an urgent branch is urgent too: a node without a priority of
    // its own inherits the highest of its predecessors' (nodes are in topological order).
    // "Its own" includes an explicit 0: only an unset priority inherits.
    // An unset priority never drops below normal (0), as before.
    if (inherits[i]) {
      for (std::uint32_t pred : node.predecessors) {
        node.priority = std::max(node.priority, plan->nodes_[pred].priority);
      }
    }
  }
  for (PlanNode& node : plan->nodes_) node.hands_off = node.agent->hands_off();
  for (PlanNode& node : plan->nodes_) {
    node.successors_hand_off =
        !node.successors.empty() &&
        std::all_of(node.successors.begin(), node.successors.end(),
                    [&](std::uint32_t succ) { return plan->nodes_[succ].hands_off; });
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
