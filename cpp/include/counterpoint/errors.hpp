#pragma once
#include <stdexcept>
#include <string>

namespace counterpoint {

// A graph that cannot run: raised by compile, before anything executes.
class GraphError : public std::runtime_error {
 public:
  GraphError(std::string node, const std::string& problem);
  // Name of the offending node; empty when the problem is the graph as a whole.
  const std::string& node() const noexcept { return node_; }

 private:
  std::string node_;
};

// The runtime refuses new work (interpreter shutting down, run already finished ...).
class EngineError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace counterpoint
