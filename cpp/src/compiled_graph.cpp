#include "counterpoint/compiled_graph.hpp"

#include <algorithm>
#include <atomic>
#include <thread>

#include <oneapi/tbb/task.h>

#include "detail/flow_graph.hpp"
#include "detail/runtime_impl.hpp"
#include "detail/tsan.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/timer_queue.hpp"

namespace counterpoint {
namespace detail {

namespace {

bool failed(const RunState& run, std::uint32_t node) {
  const NodeStatus status = run.slots[node].status.load(std::memory_order_acquire);
  return status == NodeStatus::Failed || status == NodeStatus::TimedOut;
}

// Why a node's join was not satisfied, for the record.
const char* skip_reason(std::uint32_t node, const RunState& run) {
  bool any_failed = false;
  const char* inherited = nullptr;
  for (std::uint32_t pred : run.plan.nodes()[node].predecessors) {
    const NodeStatus status = run.slots[pred].status.load(std::memory_order_acquire);
    if (status == NodeStatus::NeedsReview) return "a predecessor awaits review";
    if (status == NodeStatus::NeedsInput) return "a predecessor awaits input";
    any_failed = any_failed || failed(run, pred);
    // A skip passes its cause on: everything after a budget stop says "budget".
    if (status == NodeStatus::Skipped && inherited == nullptr) inherited = run.slots[pred].skip_reason;
  }
  if (any_failed) return "a predecessor failed";
  return inherited != nullptr ? inherited : "not routed to";
}

// Shows an agent's outcome to the run's NodeHook before the run sees it.
class HookResolver final : public Resolver, public std::enable_shared_from_this<HookResolver> {
 public:
  HookResolver(std::shared_ptr<RunState> run, std::uint32_t node)
      : run_(std::move(run)), node_(node) {}
  // Keeps the agent's real completion and returns the one the agent reports to.
  Completion intercept(Completion deliver) {
    Completion inner = deliver.redirect(shared_from_this());
    deliver_ = std::move(deliver);
    return inner;
  }
  void resolve(Outcome outcome) override {
    if (outcome.paused_below) {
      // The agents that wait were checkpointed in the child run; this one re-runs on
      // resume and restores them.
      run_.reset();
      deliver_.resolve(std::move(outcome));
      return;
    }
    auto hook = run_->node_hook;
    hook->on_outcome(RunHandle(std::move(run_)), node_, std::move(outcome), std::move(deliver_));
  }

 private:
  std::shared_ptr<RunState> run_;
  std::uint32_t node_;
  Completion deliver_;
};


// arena.execute() may hand `f` to a worker and wait for it inside oneTBB, out of
// ThreadSanitizer's sight; restate that hand-off both ways (see tsan.hpp).
template <class F>
void execute_in_arena(F&& f) {
  auto delegate = [&] {
    tsan::handoff_acquire();
    f();
    tsan::handoff_release();
  };
  tsan::handoff_release();  // after `delegate` is written
  Runtime::instance().impl().arena().execute(delegate);
  tsan::handoff_acquire();
}
}  // namespace

std::shared_ptr<FlowGraph> FlowGraph::make(std::shared_ptr<const Plan> plan) {
  // ~FlowGraph enters the arena and waits for the graph's tasks. Whoever drops the last
  // reference may be one of those tasks, or a thread holding a lock the arena's workers
  // need (the bindings' GIL), so the destruction always happens on the runtime's reaper.
  return std::shared_ptr<FlowGraph>(new FlowGraph(std::move(plan)), [](FlowGraph* graph) {
    Runtime::instance().impl().reap([graph] { delete graph; });
  });
}

FlowGraph::FlowGraph(std::shared_ptr<const Plan> plan) : plan_(std::move(plan)) {
  // A flow graph belongs to the arena it is built in.
  execute_in_arena([this] {
    graph_ = std::make_unique<tbb::flow::graph>();
    nodes_.reserve(plan_->size());
    // oneTBB priorities are unsigned with "none" lowest, so shift ours (which may be
    // negative) to keep their order: the lowest one present maps to "none".
    std::int64_t lowest = 0;
    for (const PlanNode& node : plan_->nodes()) {
      lowest = std::min<std::int64_t>(lowest, node.priority);
    }
    for (std::uint32_t i = 0; i < plan_->size(); ++i) {
      const std::int64_t priority = plan_->nodes()[i].priority - lowest;  // 0 .. 2^32 - 1
      auto body = [this, i](const Message& message, Node::gateway_type&) {
        // First, before touching the message or the captures: they were written by the
        // thread that put the message (see tsan.hpp).
        tsan::handoff_acquire();
        const Runtime::EngineWork engine_work;
        on_message(i, message);
        tsan::handoff_release();  // for ~FlowGraph, which frees what the body touched
      };
      nodes_.push_back(std::make_unique<Node>(
          *graph_, tbb::flow::unlimited, body,
          priority > 0 ? static_cast<tbb::flow::node_priority_t>(priority)
                       : tbb::flow::no_priority));
    }
    // Successors are wired highest priority first, so when a node delivers, the more
    // urgent of its successors get their tasks first.
    for (std::uint32_t i = 0; i < plan_->size(); ++i) {
      std::vector<std::uint32_t> successors = plan_->nodes()[i].successors;
      std::stable_sort(successors.begin(), successors.end(), [&](std::uint32_t a, std::uint32_t b) {
        return plan_->nodes()[a].priority > plan_->nodes()[b].priority;
      });
      for (std::uint32_t succ : successors) tbb::flow::make_edge(*nodes_[i], *nodes_[succ]);
    }
  });
}

FlowGraph::~FlowGraph() {
  execute_in_arena([this] { graph_->wait_for_all(); });
  nodes_.clear();
  graph_.reset();
}

namespace {
// Messages delivered on the current thread (see FlowGraph::forward) nest when a node
// resolves at once (skipped, restored, failed to start) inside its predecessor's
// delivery. Past this depth they go through oneTBB, so no graph can grow the stack.
constexpr int kMaxDirectDepth = 32;
thread_local int t_direct_depth = 0;

class DirectDelivery {
 public:
  static bool allowed() noexcept { return t_direct_depth < kMaxDirectDepth; }
  DirectDelivery() noexcept { ++t_direct_depth; }
  ~DirectDelivery() { --t_direct_depth; }
  DirectDelivery(const DirectDelivery&) = delete;
  DirectDelivery& operator=(const DirectDelivery&) = delete;
};
}  // namespace

void FlowGraph::start(const std::shared_ptr<RunState>& run) {
  for (std::uint32_t entry : plan_->entries()) {
    if (plan_->nodes()[entry].hands_off && DirectDelivery::allowed()) {
      const DirectDelivery direct;
      on_message(entry, Message{run, kStartSignal});
    } else {
      nodes_[entry]->try_put(Message{run, kStartSignal});
    }
  }
}

void FlowGraph::forward(const std::shared_ptr<RunState>& run, std::uint32_t node) {
  const PlanNode& spec = plan_->nodes()[node];
  if (spec.successors.empty()) return;
  if (spec.successors_hand_off && DirectDelivery::allowed()) {
    // Every successor only queues work for another executor (coroutines for an event
    // loop), so telling them here is as quick as handing the message to a oneTBB
    // worker, and spares the hop: a coroutine that finishes on the loop thread starts
    // its successors' coroutines without leaving it.
    const DirectDelivery direct;
    for (std::uint32_t succ : spec.successors) on_message(succ, Message{run, node});
    return;
  }
  gateway(node).try_put(Message{run, node});
}

void FlowGraph::on_message(std::uint32_t node, const Message& message) {
  const std::shared_ptr<RunState>& run = message.run;
  NodeSlot& slot = run->slots[node];
  const PlanNode& spec = plan_->nodes()[node];

  if (message.from == kStartSignal) {
    slot.pending.store(0, std::memory_order_relaxed);
    if (!run->running()) return;  // the run ended: agents not yet started never start
    Inputs inputs;
    inputs.kind = Inputs::Kind::RunInput;
    inputs.items.push_back(InputItem{{}, run->input, false});
    dispatch(node, run, std::move(inputs));
    return;
  }

  if (spec.join == JoinMode::Any) {
    const bool last = slot.pending.fetch_sub(1, std::memory_order_acq_rel) == 1;
    if (!run->running() || slot.fired.load(std::memory_order_acquire)) return;
    std::uint32_t chosen = kStartSignal;
    if (run->delivers(message.from, node)) {
      chosen = message.from;
    } else if (last) {
      // Another predecessor may have delivered while its own message lost the race to
      // fire; the last message must not skip the node in that case.
      for (std::uint32_t pred : spec.predecessors) {
        if (run->delivers(pred, node)) {
          chosen = pred;
          break;
        }
      }
    } else {
      return;
    }
    if (slot.fired.exchange(true, std::memory_order_acq_rel)) return;
    if (chosen == kStartSignal) {
      skip(node, run, skip_reason(node, *run));
      return;
    }
    // With several predecessors the winner arrives as {name: output}, so the agent
    // knows which one it was.
    Inputs inputs;
    inputs.kind = spec.predecessors.size() == 1 ? Inputs::Kind::Single : Inputs::Kind::Joined;
    inputs.items.push_back(
        InputItem{plan_->nodes()[chosen].name, run->slots[chosen].output, false});
    dispatch(node, run, std::move(inputs));
    return;
  }

  if (slot.pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (!run->running()) return;

  const auto& preds = spec.predecessors;
  Inputs inputs;
  inputs.kind = preds.size() == 1 ? Inputs::Kind::Single : Inputs::Kind::Joined;
  inputs.items.reserve(preds.size());
  std::size_t delivered = 0;
  for (std::uint32_t pred : preds) {
    const std::string& name = plan_->nodes()[pred].name;
    if (run->delivers(pred, node)) {
      inputs.items.push_back(InputItem{name, run->slots[pred].output, false});
      ++delivered;
    } else if (spec.join == JoinMode::Settled && failed(*run, pred)) {
      inputs.items.push_back(InputItem{name, run->slots[pred].details().failure.error, true});
    }
  }
  const bool satisfied = spec.join == JoinMode::All ? delivered == preds.size()
                         : spec.join == JoinMode::Available ? delivered > 0
                                                            : !inputs.items.empty();
  if (satisfied) {
    dispatch(node, run, std::move(inputs));
  } else {
    skip(node, run, skip_reason(node, *run));
  }
}

void FlowGraph::dispatch(std::uint32_t node, const std::shared_ptr<RunState>& run, Inputs inputs) {
  NodeSlot& slot = run->slots[node];
  const PlanNode& spec = plan_->nodes()[node];
  if (slot.restored) {
    // Known from a checkpoint or a review decision: resolve without running it again.
    slot.started_ns = run->now_ns();
    slot.status.store(NodeStatus::Running, std::memory_order_release);
    run->emit(EventKind::Start, node, {}, "restored");
    resolve_node(run, node, *slot.restored, /*invoked=*/false);
    return;
  }
  if (run->budget_spent()) {
    skip(node, run, "the run's budget was spent");
    return;
  }
  Invocation invocation;
  invocation.agent_name = spec.name;
  invocation.run_id = run->id;
  invocation.priority = spec.priority;
  invocation.inputs = std::move(inputs);
  invocation.run_context = run->context;
  slot.started_ns = run->now_ns();
  slot.status.store(NodeStatus::Running, std::memory_order_release);
  run->emit(EventKind::Start, node);

  gateway(node).reserve_wait();
  Runtime::instance().invocation_started();
  invocation.completion = Completion(run, node);
  // The last moment before the agent's body may start: a run cancelled since the join
  // was checked (or while the start was recorded) must not start it, so that once
  // cancel() has returned no agent body begins.
  if (!run->running()) {
    invocation.completion.cancelled();
    return;
  }
  if (run->node_hook) {
    invocation.completion = std::make_shared<HookResolver>(run, node)->intercept(
        std::move(invocation.completion));
  }
  try {
    spec.agent->invoke(std::move(invocation));
  } catch (...) {
    // The agent's Completion was destroyed unresolved while unwinding, which already
    // failed the node; an exception must not escape into the flow graph.
  }
}

void FlowGraph::skip(std::uint32_t node, const std::shared_ptr<RunState>& run,
                     const char* reason) {
  NodeSlot& slot = run->slots[node];
  slot.finished_ns = run->now_ns();
  slot.skip_reason = reason;
  slot.status.store(NodeStatus::Skipped, std::memory_order_release);
  run->emit(EventKind::Skip, node, {}, reason);
  forward(run, node);
  run->node_resolved(node);
}

}  // namespace detail

std::shared_ptr<CompiledGraph> CompiledGraph::compile(const GraphSpec& spec) {
  return std::make_shared<CompiledGraph>(Plan::build(spec));
}

CompiledGraph::CompiledGraph(std::shared_ptr<const Plan> plan)
    : plan_(std::move(plan)), flow_(detail::FlowGraph::make(plan_)) {}

CompiledGraph::~CompiledGraph() = default;

RunHandle CompiledGraph::start(RunOptions options) { return start_run(std::move(options), {}, 0); }

RunHandle CompiledGraph::start_run(RunOptions options,
                                   const std::shared_ptr<detail::RunState>& parent,
                                   std::uint32_t parent_node,
                                   std::unique_ptr<const detail::CheckpointScope> checkpoints) {
  Runtime& runtime = Runtime::instance();
  if (!runtime.accepting()) {
    throw EngineError("counterpoint is shutting down and accepts no new runs");
  }
  static std::atomic<std::uint64_t> next_run_id{1};
  const double deadline = options.deadline_seconds;
  auto run = std::make_shared<detail::RunState>(
      next_run_id.fetch_add(1, std::memory_order_relaxed), flow_, std::move(options));
  // Registered before a parent can adopt it: adopting a child after the parent ended
  // ends the child at once, and ending unregisters, which must come after registering or
  // the registry keeps the child forever.
  runtime.impl().register_run(run);
  if (parent) {
    run->event_root = parent->event_root ? parent->event_root : parent;
    run->event_prefix = parent->event_prefix + parent->plan.nodes()[parent_node].name + "/";
    if (checkpoints) run->checkpoints = std::move(checkpoints);
    parent->adopt_child(run);
  }
  if (deadline > 0 && run->running()) {
    std::weak_ptr<detail::RunState> weak = run;
    const auto timer = TimerQueue::instance().schedule_after(deadline, [weak] {
      if (auto alive = weak.lock()) alive->end(RunStatus::TimedOut);
    });
    std::lock_guard<std::mutex> lock(run->mutex);
    run->deadline_timer = timer;
  }
  flow_->start(run);
  return RunHandle(run);
}

}  // namespace counterpoint
