#pragma once
// Per-run state. Every run of a compiled graph gets its own slots, so concurrent runs
// over one graph share nothing mutable. Cross-thread hand-offs are published through the
// atomics below (release/acquire) rather than relying on oneTBB's internal queues, which
// keeps the code correct by construction and visible to ThreadSanitizer.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>

#include "counterpoint/agent.hpp"
#include "counterpoint/event.hpp"
#include "counterpoint/plan.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::detail {

class FlowGraph;
using Clock = std::chrono::steady_clock;

struct NodeSlot {
  std::atomic<std::uint32_t> pending{0};  // predecessors (or the start signal) still due
  std::atomic<NodeStatus> status{NodeStatus::Pending};
  // Written once by the thread that resolves the node, before `status` is released.
  Payload output;
  Failure failure;
  std::int64_t started_ns = -1;
  std::int64_t finished_ns = -1;
};

struct RunState {
  RunState(std::uint64_t run_id, std::shared_ptr<FlowGraph> graph, RunOptions&& options);
  ~RunState();

  std::int64_t now_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - started_at)
        .count();
  }
  // Moves the run to a final status once; true if this call did. Wakes waiters and
  // tells the observer.
  bool end(RunStatus final_status, std::int64_t failed = -1);
  void emit(EventKind kind, std::uint32_t node, Payload payload = {}, std::string message = {});
  Inputs gather_inputs(std::uint32_t node) const;
  bool running() const noexcept {
    return status.load(std::memory_order_acquire) == RunStatus::Running;
  }

  const std::uint64_t id;
  const std::shared_ptr<FlowGraph> graph;  // keeps the plan and the flow graph alive
  const Plan& plan;
  const Payload input;
  const std::shared_ptr<void> context;
  const std::shared_ptr<RunObserver> observer;
  const bool record_events;
  const Clock::time_point started_at;
  std::unique_ptr<NodeSlot[]> slots;
  std::atomic<std::uint32_t> unresolved;
  std::atomic<RunStatus> status{RunStatus::Running};

  mutable std::mutex mutex;
  mutable std::condition_variable changed;  // run ended, or an event arrived
  // Guarded by `mutex`, written before `status` leaves Running.
  std::int64_t failed_node = -1;
  std::int64_t ended_ns = -1;
  std::deque<Event> events;
};

// Resolves a node of a run; called through Completion from any thread.
void resolve_node(const std::shared_ptr<RunState>& run, std::uint32_t node, NodeStatus outcome,
                  Payload output, Failure failure);

}  // namespace counterpoint::detail
