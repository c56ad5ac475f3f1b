#pragma once
// Per-run state. Every run of a compiled graph gets its own slots, so concurrent runs
// over one graph share nothing mutable. Cross-thread hand-offs are published through the
// atomics below (release/acquire) rather than relying on oneTBB's internal queues, which
// keeps the code correct by construction and visible to ThreadSanitizer.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "counterpoint/agent.hpp"
#include "counterpoint/event.hpp"
#include "counterpoint/plan.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::detail {

class FlowGraph;
using Clock = std::chrono::steady_clock;
constexpr std::uint32_t kStartSignal = 0xFFFFFFFFu;
// Events a recording run's queue makes room for at once: at least, and at most.
constexpr std::size_t kEventQueueRoom = 16;
constexpr std::size_t kEventQueueRoomMax = 4096;

// What only some outcomes carry, kept out of line: a slot is then 72 bytes instead of
// 176 for the common agent that just succeeds with an output (every run has one slot
// per agent, so this is most of a run's memory).
struct NodeDetails {
  Failure failure;                    // Failed, TimedOut; NeedsReview: why
  std::vector<std::uint32_t> routes;  // a routed output's successors
  Usage usage;
  double confidence = -1.0;           // NeedsReview
};

struct NodeSlot {
  std::atomic<std::uint32_t> pending{0};  // predecessors (or the start signal) still due
  std::atomic<NodeStatus> status{NodeStatus::Pending};
  std::atomic<bool> fired{false};         // JoinMode::Any: the node was dispatched or skipped
  bool routed = false;                    // the output goes only to details().routes
  // In a run that records events: how many its root run had recorded when the node
  // started (Event::after of the node's events); the most there can be once it
  // delegates, since its result then follows from events recorded after its start.
  std::uint32_t event_mark = 0;
  // Written once by the thread that resolves the node, before `status` is released.
  Payload output;
  const char* skip_reason = "";
  std::int64_t started_ns = -1;
  std::int64_t finished_ns = -1;
  std::unique_ptr<NodeDetails> extra;     // null: no failure, routes, usage or confidence
  std::unique_ptr<Outcome> restored;      // known before the run started

  const NodeDetails& details() const noexcept {
    static const NodeDetails kNone;
    return extra ? *extra : kNone;
  }
  NodeDetails& details_to_write() {
    if (!extra) extra = std::make_unique<NodeDetails>();
    return *extra;
  }
};

// Where a durable run's agents are checkpointed, for a child run or a resumed root run.
struct CheckpointScope {
  std::string prefix;  // checkpoint path of the delegating call, with a trailing "/"
  // Outcomes known for agents below this run (RunOptions::restored_below); may be null.
  std::shared_ptr<const RestoredPaths> restored_below;
};

// What only some runs need, made when first needed: most runs delegate nothing, have
// nobody waiting for their end, report no usage and have no budget, and this keeps
// those 96 bytes out of each of them (8 for the pointer instead).
struct RunExtras {
  std::vector<std::weak_ptr<RunState>> children;     // child runs, cancelled with this one
  std::vector<std::function<void()>> end_callbacks;  // when_ended
  Usage budget;                                      // RunOptions::budget
  Usage usage_total;                                 // what the run's agents reported
};

struct RunState : std::enable_shared_from_this<RunState> {
  RunState(std::uint64_t run_id, std::shared_ptr<FlowGraph> flow, RunOptions&& options);
  ~RunState();

  std::int64_t now_ns() const noexcept { return ns_at(Clock::now()); }
  std::int64_t ns_at(Clock::time_point when) const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(when - started_at).count();
  }
  // Moves the run to a final status once; true if this call did. Wakes waiters, cancels
  // child runs and tells the observer.
  bool end(RunStatus final_status, std::int64_t failed = -1);
  // Every sink resolved: succeeded if some sink produced output, else failed.
  void end_naturally();
  // A node resolved. The run ends once every sink has: anything still running then
  // (the losers of an "any" join) has nothing left to feed and is cancelled.
  void node_resolved(std::uint32_t node) {
    if (plan.nodes()[node].successors.empty() &&
        unresolved_sinks.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      end_naturally();
    }
  }
  // Records an event of `node` at the time its slot holds (started_ns for a start,
  // finished_ns for the rest), which the caller sets first. A kind the run does not
  // record costs the check alone: the payload is shared only once it is recorded.
  void emit(EventKind kind, std::uint32_t node, const Payload& payload = {},
            std::string message = {});
  // Appends an event to the root run's queue, filled in place by `fill(Event&)` under
  // the queue's lock: built elsewhere and moved in, each event cost two moves of its two
  // strings (calls into libstdc++) more than the agent's name copied once.
  template <class Fill>
  void push_event(Fill&& fill) {
    bool first = false;
    {
      std::lock_guard<std::mutex> lock(mutex);
      first = events.empty();
      // Room for the run's events up front (a start and an end per agent, within
      // bounds): growing one event at a time moves the whole queue at each doubling,
      // under this lock, which every agent recording an event takes.
      if (events.capacity() == 0) events.reserve(event_room());
      Event& event = events.emplace_back();
      try {
        fill(event);
      } catch (...) {
        events.pop_back();  // no half-made event in the queue (filling can run out of memory)
        throw;
      }
      events_recorded.store(events_recorded.load(std::memory_order_relaxed) + 1,
                            std::memory_order_release);
    }
    if (first) announce_event();
  }
  // Records an event of this run's `node` at `seconds` from the root run's start, in the
  // root run's queue (agent path "<delegating agent>/<name>" in a child run).
  void record_event(EventKind kind, std::uint32_t node, double seconds, Payload payload,
                    std::string message, std::uint32_t attempt = 0, double delay = 0.0);
  // Requires `mutex`: the room a queue should have for the events still to come.
  std::size_t event_room() const noexcept;
  // Wakes a reader of the queue (which had been empty) and tells the context observer.
  void announce_event();
  bool running() const noexcept {
    return status.load(std::memory_order_acquire) == RunStatus::Running;
  }
  // True when `pred` succeeded and its output is meant for `node`.
  bool delivers(std::uint32_t pred, std::uint32_t node) const noexcept;
  void adopt_child(const std::shared_ptr<RunState>& child);
  // Adds an agent's reported usage to the run's totals; true once the budget is spent.
  void add_usage(const Usage& usage);

  const std::uint64_t id;
  const std::string key;
  const std::shared_ptr<FlowGraph> graph;  // keeps the plan and the flow graph alive
  const Plan& plan;
  const Payload input;
  const std::shared_ptr<void> context;
  const std::shared_ptr<RunObserver> observer;
  const std::shared_ptr<RunObserver> context_observer;
  const std::shared_ptr<NodeHook> node_hook;
  const EventKinds record_events;
  const bool announce_events;  // RunOptions::announce_events
  const Clock::time_point started_at;
  std::unique_ptr<NodeSlot[]> slots;
  std::atomic<std::uint32_t> unresolved_sinks;
  std::atomic<RunStatus> status{RunStatus::Running};
  std::atomic<std::int64_t> first_failure{-1};  // first agent that failed without ending the run
  std::atomic<bool> budget_exhausted{false};
  std::atomic<std::uint32_t> awaiting_review{0};
  std::atomic<std::uint32_t> awaiting_input{0};
  std::uint64_t deadline_timer = 0;

  // A child run (delegation) streams into its root run's event queue, and reports its
  // usage to, and spends the budget of, its root run.
  std::shared_ptr<RunState> event_root;
  std::string event_prefix;
  // Null unless the run is a child of a durable run or a resumed one with nested
  // outcomes: one pointer, since most runs are neither.
  std::unique_ptr<const CheckpointScope> checkpoints;

  RunState& root() noexcept { return event_root ? *event_root : *this; }
  bool budget_spent() const noexcept {
    const RunState& top = event_root ? *event_root : *this;
    return top.budget_exhausted.load(std::memory_order_acquire);
  }
  // Runs `callback` when the run ends (at once if it has). Must not block.
  void when_ended(std::function<void()> callback);

  mutable std::mutex mutex;
  mutable std::condition_variable changed;  // run ended, or an event arrived
  // Guarded by `mutex`, written before `status` leaves Running.
  std::int64_t failed_node = -1;
  std::int64_t ended_ns = -1;
  // A vector, not a deque: libstdc++'s deque allocates 576 bytes on construction, in
  // every run, though most runs record no events.
  std::vector<Event> events;
  // Taken by next_events so far: written under `mutex`, read without it to decide
  // whether to spin before taking it.
  std::atomic<std::uint32_t> events_taken_count{0};
  // How many events were recorded into `events`, written under `mutex`; read without it
  // when a node starts (NodeSlot::event_mark).
  std::atomic<std::uint32_t> events_recorded{0};
  std::unique_ptr<RunExtras> extras;  // guarded by `mutex`; null until needed

  // Requires `mutex`.
  RunExtras& extras_to_write() {
    if (!extras) extras = std::make_unique<RunExtras>();
    return *extras;
  }
};

// Resolves a node of a run; called through Completion from any thread. `invoked` is
// false for a restored outcome, which never reserved an invocation.
void resolve_node(const std::shared_ptr<RunState>& run, std::uint32_t node, Outcome outcome,
                  bool invoked = true);

}  // namespace counterpoint::detail
