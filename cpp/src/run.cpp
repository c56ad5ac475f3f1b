#include <algorithm>
#include <limits>
#include <optional>
#include <thread>

#include "counterpoint/compiled_graph.hpp"
#include "detail/flow_graph.hpp"
#include "detail/run_state.hpp"
#include "detail/runtime_impl.hpp"
#include "counterpoint/errors.hpp"
#include "counterpoint/runtime.hpp"
#include "counterpoint/thread_pool.hpp"
#include "counterpoint/run.hpp"
#include "counterpoint/timer_queue.hpp"

namespace counterpoint {

// ---- CancelToken ------------------------------------------------------------------

void CancelToken::cancel() {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_.exchange(true, std::memory_order_acq_rel)) return;
    callbacks.swap(callbacks_);
  }
  for (auto& callback : callbacks) callback();
}

void CancelToken::on_cancel(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!cancelled_.load(std::memory_order_acquire)) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

namespace detail {

RunState::RunState(std::uint64_t run_id, std::shared_ptr<FlowGraph> flow, RunOptions&& options)
    : id(run_id),
      key(std::move(options.key)),
      graph(std::move(flow)),
      plan(graph->plan()),
      input(std::move(options.input)),
      context(std::move(options.context)),
      observer(std::move(options.observer)),
      context_observer(std::move(options.context_observer)),
      node_hook(std::move(options.node_hook)),
      record_events(options.record_events),
      announce_events(options.announce_events),
      started_at(Clock::now()),
      slots(new NodeSlot[plan.size()]),
      unresolved_sinks(static_cast<std::uint32_t>(plan.sinks().size())) {
  for (std::uint32_t i = 0; i < plan.size(); ++i) {
    const auto preds = plan.nodes()[i].predecessors.size();
    // An entry node waits for the single start message.
    slots[i].pending.store(preds == 0 ? 1 : static_cast<std::uint32_t>(preds),
                           std::memory_order_relaxed);
  }
  for (Restored& known : options.restored) {
    if (known.node < plan.size()) {
      slots[known.node].restored = std::make_unique<Outcome>(std::move(known.outcome));
    }
  }
  if (!options.budget.empty()) extras_to_write().budget = std::move(options.budget);
  if (options.restored_below) {
    checkpoints = std::make_unique<const CheckpointScope>(
        CheckpointScope{{}, std::move(options.restored_below)});
  }
}

RunState::~RunState() = default;

bool RunState::end(RunStatus final_status, std::int64_t failed) {
  std::vector<std::weak_ptr<RunState>> orphans;
  std::vector<std::function<void()>> callbacks;
  std::uint64_t timer;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (status.load(std::memory_order_relaxed) != RunStatus::Running) return false;
    failed_node = failed;
    ended_ns = now_ns();
    status.store(final_status, std::memory_order_release);
    if (final_status == RunStatus::Succeeded && !event_root && !record_events.none()) {
      graph->set_events_last_run(events_recorded.load(std::memory_order_relaxed));
    }
    if (extras) {
      orphans.swap(extras->children);
      callbacks.swap(extras->end_callbacks);
    }
    timer = deadline_timer;
  }
  changed.notify_all();
  if (timer != 0) TimerQueue::instance().cancel(timer);
  for (const auto& child : orphans) {
    if (auto alive = child.lock()) alive->end(RunStatus::Cancelled);
  }
  for (auto& callback : callbacks) callback();
  Runtime::instance().impl().unregister_run(id);
  const RunHandle handle(shared_from_this());
  if (context_observer) context_observer->on_run_finished(handle);
  if (observer) observer->on_run_finished(handle);
  return true;
}

void RunState::end_naturally() {
  // A question outranks a review: the run cannot go on without the answer either way,
  // and the resume that answers it can bring the review decisions too.
  if (awaiting_input.load(std::memory_order_acquire) > 0) {
    end(RunStatus::NeedsInput);
    return;
  }
  if (awaiting_review.load(std::memory_order_acquire) > 0) {
    end(RunStatus::NeedsReview);
    return;
  }
  for (std::uint32_t sink : plan.sinks()) {
    if (slots[sink].status.load(std::memory_order_acquire) == NodeStatus::Succeeded) {
      end(RunStatus::Succeeded);
      return;
    }
  }
  end(RunStatus::Failed, first_failure.load(std::memory_order_acquire));
}

void RunState::adopt_child(const std::shared_ptr<RunState>& child) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (status.load(std::memory_order_relaxed) == RunStatus::Running) {
      auto& children = extras_to_write().children;
      children.erase(std::remove_if(children.begin(), children.end(),
                                    [](const std::weak_ptr<RunState>& c) { return c.expired(); }),
                     children.end());
      children.push_back(child);
      return;
    }
  }
  child->end(RunStatus::Cancelled);
}

void RunState::when_ended(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (status.load(std::memory_order_relaxed) == RunStatus::Running) {
      extras_to_write().end_callbacks.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

void RunState::add_usage(const Usage& usage) {
  if (usage.empty()) return;
  if (event_root) event_root->add_usage(usage);  // the root's budget covers its children
  std::lock_guard<std::mutex> lock(mutex);
  Usage& usage_total = extras_to_write().usage_total;
  for (const auto& [name, amount] : usage) {
    auto found = std::find_if(usage_total.begin(), usage_total.end(),
                              [&](const auto& entry) { return entry.first == name; });
    if (found == usage_total.end()) {
      usage_total.emplace_back(name, amount);
    } else {
      found->second += amount;
    }
  }
  for (const auto& [name, limit] : extras->budget) {
    for (const auto& [spent_name, spent] : usage_total) {
      if (spent_name == name && spent >= limit) {
        budget_exhausted.store(true, std::memory_order_release);
      }
    }
  }
}

bool RunState::delivers(std::uint32_t pred, std::uint32_t node) const noexcept {
  const NodeSlot& slot = slots[pred];
  if (slot.status.load(std::memory_order_acquire) != NodeStatus::Succeeded) return false;
  if (!slot.routed) return true;
  const std::vector<std::uint32_t>& routes = slot.details().routes;
  return std::find(routes.begin(), routes.end(), node) != routes.end();
}

std::size_t RunState::event_room() const noexcept {
  const std::size_t expected = std::max<std::size_t>(2 * plan.size(), graph->events_last_run());
  const std::size_t taken = events_taken_count.load(std::memory_order_relaxed);
  const std::size_t left = expected > taken ? expected - taken : 0;
  return std::clamp<std::size_t>(left, kEventQueueRoom, kEventQueueRoomMax);
}

void RunState::announce_event() {
  // Only an event into an empty queue wakes anyone: a reader waiting in next_events
  // gathers the ones that follow without a wake-up each, and an event loop takes all of
  // a run's queued events at once. A wake per event cost a futex call here and a thread
  // switch there, per event.
  changed.notify_all();
  if (announce_events && context_observer) context_observer->on_event_recorded(id);
}

void RunState::emit(EventKind kind, std::uint32_t node, const Payload& payload,
                    std::string message) {
  if (record_events.none()) return;
  NodeSlot& slot = slots[node];
  RunState& target = root();
  if (kind == EventKind::Start) {
    // Every event recorded so far, the causes of this start among them, comes before
    // this node's events: the mark is read after them (they happened before the start).
    slot.event_mark = target.events_recorded.load(std::memory_order_acquire);
  }
  if (!record_events.contains(kind)) return;
  // Stamped with the time the caller has just recorded in the slot (the node's start, or
  // its end), from the root run's start: a clock read of its own cost each event about a
  // tenth of what a no-op agent costs.
  const std::int64_t at_ns = (kind == EventKind::Start ? slot.started_ns : slot.finished_ns) +
                             (&target == this ? 0 : target.ns_at(started_at));
  record_event(kind, node, static_cast<double>(at_ns) * 1e-9, payload, std::move(message));
}

void RunState::record_event(EventKind kind, std::uint32_t node, double seconds, Payload payload,
                            std::string message, std::uint32_t attempt, double delay) {
  RunState& target = root();
  const PlanNode& spec = plan.nodes()[node];
  target.push_event([&](Event& event) {
    event.kind = kind;
    event.run_id = target.id;
    event.node = node;
    event.after = slots[node].event_mark;
    if (event_prefix.empty()) {
      event.agent = spec.name;
    } else {
      event.agent.reserve(event_prefix.size() + spec.name.size());
      event.agent.append(event_prefix).append(spec.name);
    }
    event.seconds = seconds;
    event.priority = spec.priority;
    event.payload = std::move(payload);
    event.message = std::move(message);
    event.attempt = attempt;
    event.delay = delay;
  });
}

namespace {

// Maps a router's successor names to indices; an unknown name becomes a failure.
bool resolve_routes(const RunState& run, std::uint32_t node, Outcome& outcome,
                    std::vector<std::uint32_t>& routes) {
  const PlanNode& spec = run.plan.nodes()[node];
  for (const std::string& route : outcome.routes) {
    auto found = std::find_if(spec.successors.begin(), spec.successors.end(),
                              [&](std::uint32_t s) { return run.plan.nodes()[s].name == route; });
    if (found == spec.successors.end()) {
      std::string known;
      for (std::uint32_t s : spec.successors) {
        known += (known.empty() ? "'" : ", '") + run.plan.nodes()[s].name + "'";
      }
      outcome = Outcome::failed(Failure{"routed to '" + route + "', which does not run after '" +
                                            spec.name + "'; its successors are " +
                                            (known.empty() ? "none" : known),
                                        {}});
      return false;
    }
    if (std::find(routes.begin(), routes.end(), *found) == routes.end()) routes.push_back(*found);
  }
  return true;
}

}  // namespace

void resolve_node(const std::shared_ptr<RunState>& run, std::uint32_t node, Outcome outcome,
                  bool invoked) {
  NodeSlot& slot = run->slots[node];
  const PlanNode& spec = run->plan.nodes()[node];
  FlowGraph& graph = *run->graph;
  slot.finished_ns = outcome.finished_at.time_since_epoch().count() != 0
                         ? run->ns_at(outcome.finished_at)
                         : run->now_ns();
  std::vector<std::uint32_t> routes;
  if (outcome.kind == Outcome::Kind::Succeeded && outcome.routed) {
    resolve_routes(*run, node, outcome, routes);
  }
  if (!run->running()) {
    // The run ended while this agent was running: discard the late result.
    slot.status.store(NodeStatus::Cancelled, std::memory_order_release);
  } else if (outcome.kind == Outcome::Kind::Succeeded) {
    slot.output = std::move(outcome.output);
    slot.routed = outcome.routed;
    run->add_usage(outcome.usage);
    if (!routes.empty() || !outcome.usage.empty()) {
      NodeDetails& details = slot.details_to_write();
      details.routes = std::move(routes);
      details.usage = std::move(outcome.usage);
    }
    slot.status.store(NodeStatus::Succeeded, std::memory_order_release);
    std::string routed_to;
    for (std::uint32_t r : slot.details().routes) {
      routed_to += (routed_to.empty() ? "" : ",") + run->plan.nodes()[r].name;
    }
    run->emit(EventKind::Finish, node, slot.output, std::move(routed_to));
    graph.forward(run, node);
    run->node_resolved(node);
  } else if (outcome.kind == Outcome::Kind::NeedsReview ||
             outcome.kind == Outcome::Kind::NeedsInput) {
    const bool input = outcome.kind == Outcome::Kind::NeedsInput;
    slot.output = std::move(outcome.output);
    run->add_usage(outcome.usage);
    NodeDetails& details = slot.details_to_write();
    details.failure = std::move(outcome.failure);
    details.confidence = outcome.confidence;
    details.usage = std::move(outcome.usage);
    (input ? run->awaiting_input : run->awaiting_review).fetch_add(1, std::memory_order_acq_rel);
    slot.status.store(input ? NodeStatus::NeedsInput : NodeStatus::NeedsReview,
                      std::memory_order_release);
    run->emit(input ? EventKind::Input : EventKind::Review, node, slot.output,
              details.failure.message);
    graph.forward(run, node);
    run->node_resolved(node);
  } else if (outcome.kind == Outcome::Kind::Failed) {
    const bool timed_out = outcome.failure.kind == FailureKind::Timeout;
    run->add_usage(outcome.usage);
    NodeDetails& details = slot.details_to_write();
    details.failure = std::move(outcome.failure);
    details.usage = std::move(outcome.usage);
    slot.status.store(timed_out ? NodeStatus::TimedOut : NodeStatus::Failed,
                      std::memory_order_release);
    run->emit(EventKind::Error, node, details.failure.error, details.failure.message);
    if (spec.on_error == ErrorMode::Continue) {
      std::int64_t none = -1;
      run->first_failure.compare_exchange_strong(none, node, std::memory_order_acq_rel);
      graph.forward(run, node);
      run->node_resolved(node);
    } else {
      run->end(RunStatus::Failed, node);
    }
  } else {
    slot.status.store(NodeStatus::Cancelled, std::memory_order_release);
    run->emit(EventKind::Cancel, node);
    run->end(RunStatus::Cancelled);
  }
  if (invoked) {
    graph.gateway(node).release_wait();
    Runtime::instance().invocation_finished();
  }
}

namespace {

// Resolves a delegating agent once the child run it delegated to has ended.
class DelegationObserver final : public RunObserver {
 public:
  DelegationObserver(Completion completion, std::shared_ptr<Agent> then, std::string agent,
                     std::uint64_t run_id, int priority, std::shared_ptr<void> context)
      : completion_(std::move(completion)),
        then_(std::move(then)),
        agent_(std::move(agent)),
        run_id_(run_id),
        priority_(priority),
        context_(std::move(context)) {}

  void on_run_finished(const RunHandle& child) override {
    Completion completion = std::move(completion_);
    if (completion.resolved()) return;
    switch (child.status()) {
      case RunStatus::Succeeded: {
        auto sinks = child.sink_outputs();
        if (then_ && completion.run_ended()) {
          // The delegating run was cancelled meanwhile: `then` must not start.
          completion.cancelled();
        } else if (then_) {
          Invocation invocation;
          invocation.agent_name = completion.agent_name();
          invocation.run_id = run_id_;
          invocation.priority = priority_;
          invocation.run_context = context_;
          invocation.inputs.kind = sinks.size() == 1 ? Inputs::Kind::Single : Inputs::Kind::Joined;
          for (auto& [name, value] : sinks) {
            invocation.inputs.items.push_back(InputItem{std::move(name), std::move(value), false});
          }
          invocation.completion = std::move(completion);
          then_->invoke(std::move(invocation));
        } else if (sinks.size() == 1) {
          completion.succeed(std::move(sinks.front().second));
        } else {
          completion.fail(Failure{"the delegated graph ended with " + std::to_string(sinks.size()) +
                                      " sink outputs; give it a single sink or pass a `then` "
                                      "agent that combines them",
                                  {}});
        }
        return;
      }
      case RunStatus::Failed: {
        const auto failed = child.failed_node();
        const auto failed_outcome = failed ? child.outcome(*failed) : std::nullopt;
        if (failed_outcome) {
          const NodeOutcome& outcome = *failed_outcome;
          Failure failure = outcome.failure;
          failure.message = "'" + agent_ + "/" + outcome.name + "' failed: " +
                            failure.message;
          completion.fail(std::move(failure));
        } else if (child.budget_exhausted()) {
          completion.fail(Failure{"the run's budget was spent before the delegated graph "
                                  "produced output",
                                  {},
                                  FailureKind::Budget});
        } else {
          completion.fail(Failure{"the delegated graph produced no output: every sink was skipped",
                                  {}});
        }
        return;
      }
      case RunStatus::TimedOut:
        completion.fail(Failure{"the delegated graph timed out", {}, FailureKind::Timeout});
        return;
      case RunStatus::NeedsReview:
      case RunStatus::NeedsInput: {
        // The child's waiting agents were checkpointed under their own paths; this
        // agent waits with them, and its run pauses too (up to the root).
        const bool input = child.status() == RunStatus::NeedsInput;
        Outcome outcome;
        outcome.kind = input ? Outcome::Kind::NeedsInput : Outcome::Kind::NeedsReview;
        outcome.paused_below = true;
        outcome.failure.message = input ? "an agent of its graph awaits input"
                                        : "an agent of its graph awaits review";
        completion.resolve(std::move(outcome));
        return;
      }
      case RunStatus::Cancelled:
      case RunStatus::Interrupted:
      case RunStatus::Running:
        completion.cancelled();
        return;
    }
  }

 private:
  Completion completion_;
  std::shared_ptr<Agent> then_;
  std::string agent_;
  std::uint64_t run_id_;
  int priority_;
  std::shared_ptr<void> context_;
};

}  // namespace
}  // namespace detail

// ---- Completion -------------------------------------------------------------------

Completion::Completion(std::shared_ptr<detail::RunState> run, std::uint32_t node) noexcept
    : run_(std::move(run)), node_(node) {}

Completion& Completion::operator=(Completion&& other) noexcept {
  if (this != &other) {
    Completion dropped(std::move(*this));  // resolves the one we held, if any
    run_ = std::move(other.run_);
    node_ = other.node_;
    delegations_ = other.delegations_;
    target_ = std::move(other.target_);
  }
  return *this;
}

Completion::~Completion() {
  if (!run_) return;
  try {
    resolve(Outcome::failed(Failure{
        "the agent's executor dropped the invocation without reporting a result", {}}));
  } catch (...) {
    // Nothing sensible is left to do in a destructor; the run still ends on cancel.
  }
}

Completion Completion::redirect(std::shared_ptr<Resolver> target) const {
  Completion redirected(run_, node_);
  redirected.target_ = std::move(target);
  return redirected;
}

void Completion::resolve(Outcome outcome) {
  if (!run_) throw EngineError("this invocation was already completed; complete it exactly once");
  auto run = std::move(run_);
  auto target = std::move(target_);
  if (target) {
    target->resolve(std::move(outcome));
  } else {
    detail::resolve_node(run, node_, std::move(outcome));
  }
}

void Completion::succeed_routed(Payload output, std::vector<std::string> routes) {
  Outcome outcome = Outcome::success(std::move(output));
  outcome.routed = true;
  outcome.routes = std::move(routes);
  resolve(std::move(outcome));
}

std::function<void()> Completion::delegate(std::shared_ptr<CompiledGraph> graph, Payload input,
                                           std::shared_ptr<Agent> then) {
  if (!run_) throw EngineError("this invocation was already completed; complete it exactly once");
  if (!graph) {
    fail(Failure{"delegated to no graph", {}});
    return {};
  }
  auto run = run_;
  const std::uint32_t node = node_;
  const PlanNode& spec = run->plan.nodes()[node];
  RunOptions options;
  options.input = std::move(input);
  options.context = run->context;
  options.context_observer = run->context_observer;
  options.record_events = run->record_events;
  options.announce_events = run->announce_events;
  std::unique_ptr<const detail::CheckpointScope> checkpoints;
  if (run->node_hook) {
    // A durable run checkpoints its child runs' agents too, under their paths, and a
    // resumed one restores them from there.
    options.key = run->key;
    options.node_hook = run->node_hook;
    std::string prefix = checkpoint_path();
    if (delegations_ > 0) prefix += "#" + std::to_string(delegations_ + 1);
    prefix += '/';
    const auto& below = run->checkpoints ? run->checkpoints->restored_below : nullptr;
    if (below) {
      const Plan& child_plan = graph->plan();
      for (std::uint32_t i = 0; i < child_plan.size(); ++i) {
        auto found = below->find(prefix + child_plan.nodes()[i].name);
        if (found != below->end()) options.restored.push_back(Restored{i, found->second});
      }
    }
    checkpoints = std::make_unique<const detail::CheckpointScope>(
        detail::CheckpointScope{std::move(prefix), below});
  }
  ++delegations_;  // moved into the observer with this completion: `then` continues it
  // The node's result follows from its child run's events, recorded after its start:
  // it is never moved ahead of an event recorded before it.
  run->slots[node].event_mark = std::numeric_limits<std::uint32_t>::max();
  options.observer = std::make_shared<detail::DelegationObserver>(
      std::move(*this), std::move(then), spec.name, run->id, spec.priority, run->context);
  try {
    RunHandle child = graph->start_run(std::move(options), run, node, std::move(checkpoints));
    return [child]() mutable { child.cancel(); };
  } catch (const std::exception&) {
    // The observer (and the Completion it holds) died with the options: the node has
    // been failed by the Completion's destructor.
    return {};
  }
}

bool Completion::run_ended() const noexcept { return !run_ || !run_->running(); }

bool Completion::budget_exhausted() const noexcept { return run_ && run_->budget_spent(); }

void Completion::when_run_ends(std::function<void()> callback) const {
  if (run_) {
    run_->when_ended(std::move(callback));
  } else {
    callback();
  }
}

std::string Completion::agent_name() const {
  return run_ ? run_->plan.nodes()[node_].name : std::string();
}

std::string Completion::agent_path() const {
  return run_ ? run_->event_prefix + run_->plan.nodes()[node_].name : std::string();
}

std::string Completion::checkpoint_path() const {
  return run_ ? RunHandle(run_).checkpoint_path(node_) : std::string();
}

bool Completion::durable() const noexcept { return run_ && run_->node_hook != nullptr; }

EventChannel Completion::channel() const noexcept {
  return run_ ? EventChannel(run_, node_) : EventChannel();
}

void Completion::mark(EventKind kind, std::string message, std::uint32_t attempt, double delay,
                      const Payload& payload) const {
  if (!run_ || !run_->record_events.contains(kind)) return;
  EventChannel(run_, node_).mark(kind, std::move(message), attempt, delay, payload);
}

bool EventChannel::publish(EventKind kind, Payload payload, std::string message) const {
  return push(kind, std::move(payload), std::move(message), 0, 0.0);
}

void EventChannel::mark(EventKind kind, std::string message, std::uint32_t attempt, double delay,
                        const Payload& payload) const {
  push(kind, payload, std::move(message), attempt, delay);
}

bool EventChannel::push(EventKind kind, Payload payload, std::string message,
                        std::uint32_t attempt, double delay) const {
  const std::shared_ptr<detail::RunState> run = run_.lock();
  if (!run || !run->record_events.contains(kind)) return false;
  detail::RunState& root = run->root();
  if (!root.running()) return false;  // its reader may already have taken the last events
  run->record_event(kind, node_, static_cast<double>(root.now_ns()) * 1e-9, std::move(payload),
                    std::move(message), attempt, delay);
  return true;
}

// ---- RunHandle --------------------------------------------------------------------

std::uint64_t RunHandle::id() const noexcept { return state_->id; }

bool RunHandle::records_events() const noexcept { return !state_->record_events.none(); }

std::string RunHandle::checkpoint_path(std::uint32_t node) const {
  const std::string& name = state_->plan.nodes()[node].name;
  return state_->checkpoints ? state_->checkpoints->prefix + name : name;
}

const std::string& RunHandle::key() const noexcept { return state_->key; }

RunStatus RunHandle::status() const noexcept {
  return state_->status.load(std::memory_order_acquire);
}

namespace {

// A thread about to block until `run` ends. An engine (oneTBB) thread must not: the run
// may need that very worker. A pool thread may, but stops counting against the pool's
// cap meanwhile (see ElasticThreadPool::BlockedScope). When the wait is refused the run
// is cancelled, as nobody will collect its result.
class BlockingWait {
 public:
  explicit BlockingWait(detail::RunState& run) {
    if (Runtime::on_engine_thread()) {
      run.end(RunStatus::Cancelled);
      throw EngineError(
          "an agent running inline on an engine thread waited for a run, which could stall "
          "the engine, so the run was cancelled; add the graph itself as an agent instead, "
          "or run this agent on a thread (dispatch='thread')");
    }
    try {
      blocked_.emplace();
    } catch (const EngineError&) {
      run.end(RunStatus::Cancelled);
      throw;
    }
  }

 private:
  std::optional<ElasticThreadPool::BlockedScope> blocked_;
};

}  // namespace

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
  if (timeout <= spin) return done();
  const BlockingWait blocking(*state_);
  std::unique_lock<std::mutex> lock(state_->mutex);
  return state_->changed.wait_for(lock, timeout, [&] { return done(); });
}

void RunHandle::wait() const {
  if (done()) return;
  const BlockingWait blocking(*state_);
  std::unique_lock<std::mutex> lock(state_->mutex);
  state_->changed.wait(lock, [&] { return done(); });
}

bool RunHandle::cancel() { return state_->end(RunStatus::Cancelled); }
bool RunHandle::interrupt() { return state_->end(RunStatus::Interrupted); }
void RunHandle::when_ended(std::function<void()> callback) const {
  state_->when_ended(std::move(callback));
}

std::vector<std::pair<std::string, Payload>> RunHandle::sink_outputs() const {
  std::vector<std::pair<std::string, Payload>> outputs;
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

std::size_t RunHandle::sink_count() const noexcept { return state_->plan.sinks().size(); }

std::optional<NodeOutcome> RunHandle::outcome(std::uint32_t node) const {
  const Plan& plan = state_->plan;
  if (node >= plan.size()) return std::nullopt;
  const detail::NodeSlot& slot = state_->slots[node];
  NodeOutcome out;
  out.name = plan.nodes()[node].name;
  out.status = slot.status.load(std::memory_order_acquire);
  switch (out.status) {
    case NodeStatus::Succeeded:
      out.output = slot.output;
      for (std::uint32_t r : slot.details().routes) out.routes.push_back(plan.nodes()[r].name);
      break;
    case NodeStatus::NeedsReview:
    case NodeStatus::NeedsInput:
      out.output = slot.output;
      out.failure = slot.details().failure;
      out.confidence = slot.details().confidence;
      break;
    case NodeStatus::Failed:
    case NodeStatus::TimedOut:
      out.failure = slot.details().failure;
      break;
    case NodeStatus::Skipped:
      out.skip_reason = slot.skip_reason;
      break;
    default:
      break;
  }
  if (out.status != NodeStatus::Pending && out.status != NodeStatus::Running) {
    out.usage = slot.details().usage;
  }
  out.restored = slot.restored != nullptr && out.status != NodeStatus::Pending;
  if (out.status != NodeStatus::Pending && out.status != NodeStatus::Skipped) {
    out.started = static_cast<double>(slot.started_ns) * 1e-9;
  }
  if (out.status != NodeStatus::Pending && out.status != NodeStatus::Running) {
    out.finished = static_cast<double>(slot.finished_ns) * 1e-9;
  }
  return out;
}

std::vector<NodeOutcome> RunHandle::outcomes() const {
  std::vector<NodeOutcome> all;
  all.reserve(state_->plan.size());
  for (std::uint32_t i = 0; i < state_->plan.size(); ++i) {
    if (auto known = outcome(i)) all.push_back(std::move(*known));
  }
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

Usage RunHandle::usage() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->extras ? state_->extras->usage_total : Usage{};
}

bool RunHandle::budget_exhausted() const noexcept { return state_->budget_spent(); }

bool RunHandle::nested() const noexcept { return state_->event_root != nullptr; }

bool RunHandle::next_events(std::vector<Event>& out, std::chrono::nanoseconds timeout,
                            std::chrono::nanoseconds gather, std::chrono::nanoseconds spin) {
  detail::RunState& run = *state_;
  if (run.record_events.none()) {
    throw EngineError("this run records no events; start it with RunOptions::record_events");
  }
  const auto events_or_end = [&] { return !run.events.empty() || !run.running(); };
  const auto now = detail::Clock::now();
  const auto deadline = now + timeout;
  if (timeout.count() > 0 && gather.count() > 0 && spin.count() > 0 &&
      run.events_taken_count.load(std::memory_order_relaxed) == 0 && run.running()) {
    // A run about to end is cheaper to spin for than to sleep on and be woken: a fast
    // run then ends within the spin and all its events come out in one batch. Only
    // before the first batch: a run still going after one is not about to end, and a
    // spinning reader takes a core from the agents. Before taking the queue's lock:
    // the agents take it for every event they record, and a reader that held it as
    // the run began made the first of them wait for it asleep (a glibc mutex does not
    // spin) and be woken, tens of microseconds, in one streamed run in five.
    const auto spin_until = now + std::min({spin, gather, timeout});
    unsigned rounds = 0;
    while (run.running() && detail::Clock::now() < spin_until) {
      if (++rounds % 64 == 0) std::this_thread::yield();
    }
  }
  std::unique_lock<std::mutex> lock(run.mutex);
  if (timeout.count() > 0 && run.running()) {
    // Constructed (without the lock: it may end the run) only once this call sleeps.
    std::optional<BlockingWait> blocking;
    const auto sleep_until = [&](detail::Clock::time_point until, auto&& done) {
      if (!blocking) {
        lock.unlock();
        blocking.emplace(run);
        lock.lock();
      }
      run.changed.wait_until(lock, until, done);
    };
    if (!events_or_end()) sleep_until(deadline, events_or_end);
    if (gather.count() > 0 && !run.events.empty() && run.running()) {
      // Events recorded in quick succession (no-op agents, child runs) join the first
      // one: the reader then wakes, and takes the GIL from the agents, once per batch
      // instead of once per event. push_event wakes no one for them; the run's end does.
      const auto first_at =
          run.started_at + std::chrono::duration_cast<detail::Clock::duration>(
                               std::chrono::duration<double>(run.events.front().seconds));
      const auto until = std::min(deadline, first_at + gather);
      if (detail::Clock::now() < until) sleep_until(until, [&] { return !run.running(); });
    }
  }
  // The status is read under the lock that end() sets it under, so every event recorded
  // before the end is in the queue taken here.
  const bool ended = !run.running();
  const std::uint32_t taken_before = run.events_taken_count.load(std::memory_order_relaxed);
  run.events_taken_count.store(taken_before + static_cast<std::uint32_t>(run.events.size()),
                               std::memory_order_relaxed);
  const std::size_t first = out.size();
  if (first == 0) {
    out.swap(run.events);
    // The queue left behind keeps room for the events still to come.
    if (!ended) run.events.reserve(run.event_room());
  } else {
    for (auto& event : run.events) out.push_back(std::move(event));
    run.events.clear();
  }
  lock.unlock();
  // Results that are ready together are delivered highest priority first. Only runs of
  // results that cannot have caused one another are reordered: a start or a skip
  // follows the results it depends on, so it stays where it is, and a result whose
  // agent started after the first of a run was recorded may depend on it, so it begins
  // the next run. The stream remains causal whichever kinds the run records.
  auto is_barrier = [](const Event& e) {
    return e.kind == EventKind::Start || e.kind == EventKind::Skip;
  };
  const auto begin = out.begin() + static_cast<std::ptrdiff_t>(first);
  auto segment = begin;
  while (segment != out.end()) {
    if (is_barrier(*segment)) {
      ++segment;
      continue;
    }
    const auto at = taken_before + static_cast<std::uint32_t>(segment - begin);
    auto end = std::find_if(segment + 1, out.end(),
                            [&](const Event& e) { return is_barrier(e) || e.after > at; });
    if (end - segment > 1) {
      std::stable_sort(segment, end,
                       [](const Event& a, const Event& b) { return a.priority > b.priority; });
    }
    segment = end;
  }
  return !ended;
}

}  // namespace counterpoint
