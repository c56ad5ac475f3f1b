#include <thread>

#include "counterpoint/detail/flow_graph.hpp"
#include "counterpoint/detail/run_state.hpp"
#include "counterpoint/detail/runtime_impl.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint {
namespace detail {

RunState::RunState(std::uint64_t run_id, std::shared_ptr<FlowGraph> flow, RunOptions&& options)
    : id(run_id),
      graph(std::move(flow)),
      plan(graph->plan()),
      input(std::move(options.input)),
      context(std::move(options.context)),
      observer(std::move(options.observer)),
      record_events(options.record_events),
      started_at(Clock::now()),
      slots(new NodeSlot[plan.size()]),
      unresolved(static_cast<std::uint32_t>(plan.size())) {
  for (std::uint32_t i = 0; i < plan.size(); ++i) {
    const auto preds = plan.nodes()[i].predecessors.size();
    // An entry node waits for the single start message.
    slots[i].pending.store(preds == 0 ? 1 : static_cast<std::uint32_t>(preds),
                           std::memory_order_relaxed);
  }
}

RunState::~RunState() = default;

bool RunState::end(RunStatus final_status, std::int64_t failed) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (status.load(std::memory_order_relaxed) != RunStatus::Running) return false;
    failed_node = failed;
    ended_ns = now_ns();
    status.store(final_status, std::memory_order_release);
  }
  changed.notify_all();
  Runtime::instance().impl().unregister_run(id);
  if (observer) observer->on_run_finished(id, final_status);
  return true;
}

void RunState::emit(EventKind kind, std::uint32_t node, Payload payload, std::string message) {
  if (!record_events) return;
  {
    std::lock_guard<std::mutex> lock(mutex);
    const PlanNode& spec = plan.nodes()[node];
    events.push_back(Event{kind, id, node, spec.name, static_cast<double>(now_ns()) * 1e-9,
                           spec.priority, std::move(payload), std::move(message)});
  }
  changed.notify_all();
}

Inputs RunState::gather_inputs(std::uint32_t node) const {
  Inputs inputs;
  const auto& preds = plan.nodes()[node].predecessors;
  if (preds.empty()) {
    inputs.kind = Inputs::Kind::RunInput;
    inputs.items.emplace_back(std::string_view{}, input);
    return inputs;
  }
  inputs.kind = preds.size() == 1 ? Inputs::Kind::Single : Inputs::Kind::Joined;
  inputs.items.reserve(preds.size());
  for (std::uint32_t pred : preds) {
    // Acquire pairs with the release in resolve_node: the output is fully written.
    (void)slots[pred].status.load(std::memory_order_acquire);
    inputs.items.emplace_back(plan.nodes()[pred].name, slots[pred].output);
  }
  return inputs;
}

void resolve_node(const std::shared_ptr<RunState>& run, std::uint32_t node, NodeStatus outcome,
                  Payload output, Failure failure) {
  NodeSlot& slot = run->slots[node];
  auto& gateway = run->graph->gateway(node);
  slot.finished_ns = run->now_ns();
  if (!run->running()) {
    // The run ended while this agent was running: discard the late result.
    slot.status.store(NodeStatus::Cancelled, std::memory_order_release);
  } else if (outcome == NodeStatus::Succeeded) {
    slot.output = std::move(output);
    slot.status.store(NodeStatus::Succeeded, std::memory_order_release);
    run->emit(EventKind::Finish, node, slot.output);
    if (run->graph->has_successors(node)) gateway.try_put(run);
    if (run->unresolved.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      run->end(RunStatus::Succeeded);
    }
  } else if (outcome == NodeStatus::Failed) {
    slot.failure = std::move(failure);
    slot.status.store(NodeStatus::Failed, std::memory_order_release);
    run->emit(EventKind::Error, node, slot.failure.error, slot.failure.message);
    run->end(RunStatus::Failed, node);
  } else {
    slot.status.store(NodeStatus::Cancelled, std::memory_order_release);
    run->emit(EventKind::Cancel, node);
    run->end(RunStatus::Cancelled);
  }
  gateway.release_wait();
  Runtime::instance().invocation_finished();
}

}  // namespace detail

// ---- Completion -------------------------------------------------------------------

Completion::Completion(std::shared_ptr<detail::RunState> run, std::uint32_t node) noexcept
    : run_(std::move(run)), node_(node) {}

Completion& Completion::operator=(Completion&& other) noexcept {
  if (this != &other) {
    Completion dropped(std::move(*this));  // resolves the one we held, if any
    run_ = std::move(other.run_);
    node_ = other.node_;
  }
  return *this;
}

Completion::~Completion() {
  if (!run_) return;
  try {
    detail::resolve_node(run_, node_, NodeStatus::Failed, {},
                         Failure{"the agent's executor dropped the invocation without reporting "
                                 "a result",
                                 {}});
  } catch (...) {
    // Nothing sensible is left to do in a destructor; the run still ends on cancel.
  }
}

namespace {
std::shared_ptr<detail::RunState> take(std::shared_ptr<detail::RunState>& run) {
  if (!run) throw EngineError("this invocation was already completed; complete it exactly once");
  return std::move(run);
}
}  // namespace

void Completion::succeed(Payload output) {
  auto run = take(run_);
  detail::resolve_node(run, node_, NodeStatus::Succeeded, std::move(output), {});
}

void Completion::fail(Failure failure) {
  auto run = take(run_);
  detail::resolve_node(run, node_, NodeStatus::Failed, {}, std::move(failure));
}

void Completion::cancelled() {
  auto run = take(run_);
  detail::resolve_node(run, node_, NodeStatus::Cancelled, {}, {});
}

bool Completion::run_ended() const noexcept { return !run_ || !run_->running(); }

// ---- RunHandle --------------------------------------------------------------------

std::uint64_t RunHandle::id() const noexcept { return state_->id; }

RunStatus RunHandle::status() const noexcept {
  return state_->status.load(std::memory_order_acquire);
}

bool RunHandle::wait_for(std::chrono::nanoseconds timeout, std::chrono::nanoseconds spin) const {
  if (done()) return true;
  if (spin.count() > 0) {
    const auto spin_until = detail::Clock::now() + std::min(spin, timeout);
    unsigned rounds = 0;
    while (detail::Clock::now() < spin_until) {
      if (done()) return true;
      if (++rounds % 64 == 0) std::this_thread::yield();
    }
  }
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return done(); });
}

void RunHandle::wait() const {
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->changed.wait(lock, [&] { return done(); });
}

bool RunHandle::cancel() { return state_->end(RunStatus::Cancelled); }

std::vector<std::pair<std::string_view, Payload>> RunHandle::sink_outputs() const {
  std::vector<std::pair<std::string_view, Payload>> outputs;
  const Plan& plan = state_->plan;
  outputs.reserve(plan.sinks().size());
  for (std::uint32_t sink : plan.sinks()) {
    const detail::NodeSlot& slot = state_->slots[sink];
    if (slot.status.load(std::memory_order_acquire) == NodeStatus::Succeeded) {
      outputs.emplace_back(plan.nodes()[sink].name, slot.output);
    }
  }
  return outputs;
}

std::optional<NodeOutcome> RunHandle::outcome(std::uint32_t node) const {
  const Plan& plan = state_->plan;
  if (node >= plan.size()) return std::nullopt;
  const detail::NodeSlot& slot = state_->slots[node];
  NodeOutcome out;
  out.name = plan.nodes()[node].name;
  out.status = slot.status.load(std::memory_order_acquire);
  if (out.status == NodeStatus::Succeeded) out.output = slot.output;
  if (out.status == NodeStatus::Failed) out.failure = slot.failure;
  if (out.status != NodeStatus::Pending) out.started = slot.started_ns * 1e-9;
  if (out.status != NodeStatus::Pending && out.status != NodeStatus::Running) {
    out.finished = slot.finished_ns * 1e-9;
  }
  return out;
}

std::vector<NodeOutcome> RunHandle::outcomes() const {
  std::vector<NodeOutcome> all;
  all.reserve(state_->plan.size());
  for (std::uint32_t i = 0; i < state_->plan.size(); ++i) all.push_back(*outcome(i));
  return all;
}

std::optional<std::uint32_t> RunHandle::failed_node() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  if (state_->failed_node < 0) return std::nullopt;
  return static_cast<std::uint32_t>(state_->failed_node);
}

double RunHandle::elapsed() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  const std::int64_t ns = state_->ended_ns >= 0 ? state_->ended_ns : state_->now_ns();
  return static_cast<double>(ns) * 1e-9;
}

bool RunHandle::next_events(std::vector<Event>& out, std::chrono::nanoseconds timeout) {
  if (!state_->record_events) {
    throw EngineError("this run records no events; start it with record_events = true");
  }
  std::unique_lock<std::mutex> lock(state_->mutex);
  if (state_->events.empty() && state_->running()) {
    state_->changed.wait_for(lock, timeout,
                             [&] { return !state_->events.empty() || !state_->running(); });
  }
  const bool took = !state_->events.empty();
  for (auto& event : state_->events) out.push_back(std::move(event));
  state_->events.clear();
  return took || state_->running();
}

}  // namespace counterpoint
