#pragma once
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/agent.hpp"

namespace counterpoint {

// One agent of a graph as the user declared it. Nothing is checked here: compile()
// validates the whole spec at once so every problem names its node.
struct NodeSpec {
  std::string name;
  std::shared_ptr<Agent> agent;
  std::vector<std::string> after;  // predecessor names
  // Higher runs first when several nodes are ready at once (0 = normal).
  int priority = 0;
};

struct GraphSpec {
  std::vector<NodeSpec> nodes;

  NodeSpec& add(std::string name, std::shared_ptr<Agent> agent,
                std::vector<std::string> after = {}, int priority = 0) {
    nodes.push_back(NodeSpec{std::move(name), std::move(agent), std::move(after), priority});
    return nodes.back();
  }
};

}  // namespace counterpoint
