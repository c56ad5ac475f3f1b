#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "counterpoint/agent.hpp"
#include "counterpoint/policy.hpp"

namespace counterpoint {

// When a node with predecessors runs, given how they resolved. A predecessor
// "delivers" to a node when it succeeded and, if it routed, routed to that node.
enum class JoinMode : std::uint8_t {
  All,        // every predecessor delivered; otherwise the node is skipped
  Any,        // the first predecessor to deliver: its output (as {name: output} when
              // the node has several predecessors, so it knows which one won)
  Available,  // once all resolved, with those that delivered; skipped if none did
  Settled,    // once all resolved, with successes and failures; skipped if all skipped
};

// What an agent's failure does to its run.
enum class ErrorMode : std::uint8_t {
  Inherit,   // the graph's mode
  FailRun,   // the run ends at once as failed (fail fast)
  Continue,  // the run goes on; dependents that need this agent are skipped
};

// One agent of a graph as the user declared it. Nothing is checked here: compile()
// validates the whole spec at once so every problem names its node.
struct NodeSpec {
  std::string name;  // unique, non-empty, without '/' (it separates nested agent paths)
  std::shared_ptr<Agent> agent;
  std::vector<std::string> after;  // predecessor names
  // Higher runs first when several nodes are ready at once. Unset: the highest of the
  // predecessors' priorities (0 for an entry), so work downstream of an urgent branch is
  // urgent too; an explicit value, 0 included, is kept as declared.
  std::optional<int> priority;
  JoinMode join = JoinMode::All;
  ErrorMode on_error = ErrorMode::Inherit;
  // Retry, timeout, breaker, limits, fallback: compile() wraps `agent` in a PolicyAgent.
  std::optional<AgentPolicy> policy;
  // Applied by compile() around the agent after its policy, so it sees what the policy
  // finally produced (retries and fallback done): the embedder's gates, e.g. a human
  // review of low-confidence outputs.
  std::function<std::shared_ptr<Agent>(std::shared_ptr<Agent>)> wrap;
};

struct GraphSpec {
  std::vector<NodeSpec> nodes;
  ErrorMode on_error = ErrorMode::FailRun;

  NodeSpec& add(std::string name, std::shared_ptr<Agent> agent,
                std::vector<std::string> after = {},
                std::optional<int> priority = std::nullopt) {
    NodeSpec node;
    node.name = std::move(name);
    node.agent = std::move(agent);
    node.after = std::move(after);
    node.priority = priority;
    nodes.push_back(std::move(node));
    return nodes.back();
  }
};

}  // namespace counterpoint
