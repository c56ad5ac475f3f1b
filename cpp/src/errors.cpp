#include "counterpoint/errors.hpp"

namespace counterpoint {

namespace {
std::string describe(const std::string& node, const std::string& problem) {
  if (node.empty()) return problem;
  return "agent '" + node + "': " + problem;
}
}  // namespace

GraphError::GraphError(std::string node, const std::string& problem)
    : std::runtime_error(describe(node, problem)), node_(std::move(node)) {}

}  // namespace counterpoint
