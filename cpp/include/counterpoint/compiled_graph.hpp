#pragma once
#include <memory>

#include "counterpoint/plan.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint {

namespace detail {
class FlowGraph;
struct CheckpointScope;
}

// An immutable, validated graph wired into a oneTBB flow graph, ready to run any number
// of independent runs at once. Runs keep what they need alive, so dropping a
// CompiledGraph never cuts a run short.
class CompiledGraph {
 public:
  // Validates `spec` (throws GraphError) and wires it.
  static std::shared_ptr<CompiledGraph> compile(const GraphSpec& spec);
  explicit CompiledGraph(std::shared_ptr<const Plan> plan);
  ~CompiledGraph();
  CompiledGraph(const CompiledGraph&) = delete;
  CompiledGraph& operator=(const CompiledGraph&) = delete;

  const Plan& plan() const noexcept { return *plan_; }

  // Starts a run and returns at once. Throws EngineError if the runtime is shut down.
  RunHandle start(RunOptions options);

 private:
  friend class Completion;  // delegation starts child runs
  // `checkpoints`: where a durable parent's child run checkpoints its agents (null for
  // the rest).
  RunHandle start_run(RunOptions options, const std::shared_ptr<detail::RunState>& parent,
                      std::uint32_t parent_node,
                      std::unique_ptr<const detail::CheckpointScope> checkpoints = nullptr);

  std::shared_ptr<const Plan> plan_;
  std::shared_ptr<detail::FlowGraph> flow_;
};

}  // namespace counterpoint
