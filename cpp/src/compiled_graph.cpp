#include "counterpoint/compiled_graph.hpp"

#include <atomic>
#include <thread>

#include "counterpoint/detail/flow_graph.hpp"
#include "counterpoint/detail/runtime_impl.hpp"
#include "counterpoint/errors.hpp"

namespace counterpoint {
namespace detail {

namespace {
bool inside_a_tbb_task() {
  return tbb::this_task_arena::current_thread_index() != tbb::task_arena::not_initialized;
}
}  // namespace

std::shared_ptr<FlowGraph> FlowGraph::make(std::shared_ptr<const Plan> plan) {
  // ~FlowGraph waits for the graph's tasks; if the last run lets go of it from inside one
  // of those tasks, that wait would never end. Hand such a destruction to a thread of
  // its own.
  return std::shared_ptr<FlowGraph>(new FlowGraph(std::move(plan)), [](FlowGraph* graph) {
    if (!inside_a_tbb_task()) {
      delete graph;
      return;
    }
    try {
      std::thread([graph] { delete graph; }).detach();
    } catch (...) {
      // No thread to spare: leak one graph rather than deadlock.
    }
  });
}

FlowGraph::FlowGraph(std::shared_ptr<const Plan> plan) : plan_(std::move(plan)) {
  // A flow graph belongs to the arena it is built in.
  Runtime::instance().impl().arena().execute([this] {
    graph_ = std::make_unique<tbb::flow::graph>();
    nodes_.reserve(plan_->size());
    for (std::uint32_t i = 0; i < plan_->size(); ++i) {
      const int priority = plan_->nodes()[i].priority;
      auto body = [this, i](const RunRef& run, Node::gateway_type& gateway) {
        on_message(i, run, gateway);
      };
      nodes_.push_back(std::make_unique<Node>(
          *graph_, tbb::flow::unlimited, body,
          priority > 0 ? static_cast<tbb::flow::node_priority_t>(priority)
                       : tbb::flow::no_priority));
    }
    for (std::uint32_t i = 0; i < plan_->size(); ++i) {
      for (std::uint32_t succ : plan_->nodes()[i].successors) {
        tbb::flow::make_edge(*nodes_[i], *nodes_[succ]);
      }
    }
  });
}

FlowGraph::~FlowGraph() {
  Runtime::instance().impl().arena().execute([this] { graph_->wait_for_all(); });
  nodes_.clear();
  graph_.reset();
}

void FlowGraph::start(const RunRef& run) {
  for (std::uint32_t entry : plan_->entries()) nodes_[entry]->try_put(run);
}

void FlowGraph::on_message(std::uint32_t node, const RunRef& run, Node::gateway_type& gateway) {
  NodeSlot& slot = run->slots[node];
  if (slot.pending.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  if (!run->running()) return;  // the run ended: agents not yet started never start

  Invocation invocation;
  invocation.agent_name = plan_->nodes()[node].name;
  invocation.run_id = run->id;
  invocation.inputs = run->gather_inputs(node);
  invocation.run_context = run->context;
  slot.started_ns = run->now_ns();
  slot.status.store(NodeStatus::Running, std::memory_order_release);
  run->emit(EventKind::Start, node);

  gateway.reserve_wait();
  Runtime::instance().invocation_started();
  invocation.completion = Completion(run, node);
  try {
    plan_->nodes()[node].agent->invoke(std::move(invocation));
  } catch (...) {
    // The agent's Completion was destroyed unresolved while unwinding, which already
    // failed the node; an exception must not escape into the flow graph.
  }
}

}  // namespace detail

std::shared_ptr<CompiledGraph> CompiledGraph::compile(const GraphSpec& spec) {
  return std::make_shared<CompiledGraph>(Plan::build(spec));
}

CompiledGraph::CompiledGraph(std::shared_ptr<const Plan> plan)
    : plan_(std::move(plan)), flow_(detail::FlowGraph::make(plan_)) {}

CompiledGraph::~CompiledGraph() = default;

RunHandle CompiledGraph::start(RunOptions options) {
  Runtime& runtime = Runtime::instance();
  if (!runtime.accepting()) {
    throw EngineError("counterpoint is shutting down and accepts no new runs");
  }
  static std::atomic<std::uint64_t> next_run_id{1};
  auto run = std::make_shared<detail::RunState>(
      next_run_id.fetch_add(1, std::memory_order_relaxed), flow_, std::move(options));
  runtime.impl().register_run(run);
  flow_->start(run);
  return RunHandle(run);
}

}  // namespace counterpoint
