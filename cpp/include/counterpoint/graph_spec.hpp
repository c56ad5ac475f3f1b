#pragma once
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/agent.hpp"

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
  std::string name;
  std::shared_ptr<Agent> agent;
  std::vector<std::string> after;  // predecessor names
  // Higher runs first when several nodes are ready at once (0 = normal).
  int priority = 0;
  JoinMode join = JoinMode::All;
  ErrorMode on_error = ErrorMode::Inherit;
};

struct GraphSpec {
  std::vector<NodeSpec> nodes;
  ErrorMode on_error = ErrorMode::FailRun;

  NodeSpec& add(std::string name, std::shared_ptr<Agent> agent,
                std::vector<std::string> after = {}, int priority = 0) {
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
