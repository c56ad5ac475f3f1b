#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "counterpoint/agent.hpp"
#include "counterpoint/event.hpp"

namespace counterpoint {

// TimedOut: the run's deadline passed. NeedsReview: the run stopped with agents whose
// output awaits a human decision; resume it with that decision. Interrupted: stopped
// from outside the caller's intent (Ctrl-C, process exit), so a durable run is resumed
// rather than treated as cancelled on purpose. NeedsInput: the run stopped with agents
// that asked a person a question (an interrupt); resume it with the answers.
enum class RunStatus : std::uint8_t {
  Running, Succeeded, Failed, Cancelled, TimedOut, NeedsReview, Interrupted, NeedsInput
};
// Pending at the end of a run means the agent never started (its run ended first).
// Cancelled means it was running when its run ended, and its late result was discarded.
// Skipped means its join could not be satisfied (not routed to, or a needed
// predecessor failed or was skipped).
// TimedOut: it failed because it did not finish in time. NeedsReview: its output awaits
// a human decision and was not delivered. NeedsInput: it asked a question and stopped.
enum class NodeStatus : std::uint8_t {
  Pending, Running, Succeeded, Failed, Cancelled, Skipped, TimedOut, NeedsReview, NeedsInput
};

const char* to_string(RunStatus status) noexcept;
const char* to_string(NodeStatus status) noexcept;

struct NodeOutcome {
  std::string name;
  NodeStatus status = NodeStatus::Pending;
  Payload output;    // Succeeded
  Failure failure;   // Failed
  double started = -1.0;   // seconds since the run started; -1 if it never started
  double finished = -1.0;
  std::vector<std::string> routes;  // a router's chosen successors
  Usage usage;                       // what the agent reported consuming
  const char* skip_reason = "";      // Skipped: why
  double confidence = -1.0;          // NeedsReview: the confidence that triggered it
  bool restored = false;             // taken from a checkpoint, not run again
};

class RunHandle;

// Sees every agent outcome of a run before the run does, and delivers it (possibly
// later, from another thread) through `deliver`. The bindings persist checkpoints here.
class NodeHook {
 public:
  virtual ~NodeHook() = default;
  virtual void on_outcome(const RunHandle& run, std::uint32_t node, Outcome outcome,
                          Completion deliver) = 0;
};

// An outcome known before the run starts (from a checkpoint, or a review decision).
struct Restored {
  std::uint32_t node = 0;
  Outcome outcome;
};

// Outcomes known before a run starts for agents of the child runs it will start, by
// checkpoint path (Completion::checkpoint_path), e.g. "review/security" or
// "refine/loop#2/worker": a child run restores its agents' outcomes from here.
using RestoredPaths = std::unordered_map<std::string, Outcome>;

// Told when a run reaches its end, on whichever thread ended it. Must not block.
class RunObserver {
 public:
  virtual ~RunObserver() = default;
  virtual void on_run_finished(const RunHandle& run) = 0;
  // An event was recorded for run `run_id` (runs that record events) into an
  // empty queue. Told once per batch, not per event: a reader takes all of a run's
  // queued events at once (next_events), so it needs telling only that there are some.
  virtual void on_event_recorded(std::uint64_t /*run_id*/) {}
};

struct RunOptions {
  Payload input;
  std::string key;                          // the embedder's name for the run (durable runs)
  std::shared_ptr<void> context;            // handed to every Invocation of the run
  std::shared_ptr<RunObserver> observer;    // told when this run ends; may be null
  // Travels with `context`: told when this run or any of its child runs ends.
  std::shared_ptr<RunObserver> context_observer;
  // The kinds of event to queue for next_events(), for this run and its child runs;
  // none: no queue.
  EventKinds record_events;
  // Tell `context_observer` of the events recorded (on_event_recorded): for a reader that
  // waits for them through it rather than in next_events. Off, the observer is told of
  // none: waking it per batch for a reader that does not listen cost an event loop a
  // wake-up and the agents the GIL.
  bool announce_events = false;
  std::shared_ptr<NodeHook> node_hook;      // may be null
  // Agents whose outcome is already known: they resolve without running.
  std::vector<Restored> restored;
  // The same for agents of child runs, at any depth; may be null.
  std::shared_ptr<const RestoredPaths> restored_below;
  // Stop starting agents once any of these totals of reported usage is reached.
  Usage budget;
  double deadline_seconds = 0.0;            // > 0: the run times out after this long
};

// A run in flight or finished. Cheap to copy; every copy refers to the same run.
class RunHandle {
 public:
  RunHandle() = default;
  explicit RunHandle(std::shared_ptr<detail::RunState> state) : state_(std::move(state)) {}

  std::uint64_t id() const noexcept;
  const std::string& key() const noexcept;
  RunStatus status() const noexcept;
  bool done() const noexcept { return status() != RunStatus::Running; }

  // Waits up to `timeout` for the run to end; spins for up to `spin` first, which is
  // cheaper than sleeping when the run is about to end. True when the run has ended.
  bool wait_for(std::chrono::nanoseconds timeout,
                std::chrono::nanoseconds spin = std::chrono::nanoseconds(0)) const;
  void wait() const;

  // Ends the run: agents not yet started never start; results of agents still running
  // are discarded when they arrive. No effect on a finished run. True if this call
  // ended it.
  bool cancel();
  // Like cancel(), but the run ends Interrupted: the caller did not mean to stop it.
  bool interrupt();
  // Calls `callback` once the run has ended, on the thread that ends it (at once, on
  // this thread, if it has): it must be quick and must not wait for the run.
  void when_ended(std::function<void()> callback) const;

  // Results, meaningful once done(). sink_outputs() has the sinks that succeeded, by name.
  std::vector<std::pair<std::string, Payload>> sink_outputs() const;
  std::size_t sink_count() const noexcept;
  std::vector<NodeOutcome> outcomes() const;
  // The agent whose failure ended the run (or, for a run that ended with no sink
  // output, the first agent that failed), if any.
  std::optional<std::uint32_t> failed_node() const;
  std::optional<NodeOutcome> outcome(std::uint32_t node) const;
  double elapsed() const;  // seconds from start to end (or to now while running)
  // Usage reported by all agents so far, summed by name.
  Usage usage() const;
  bool budget_exhausted() const noexcept;
  // True for a child run: one a delegation or a graph added as an agent started.
  bool nested() const noexcept;
  // True if the run records events of some kind (RunOptions::record_events).
  bool records_events() const noexcept;
  // The path under which a durable run checkpoints `node` of this run (see
  // Completion::checkpoint_path): its name in a root run.
  std::string checkpoint_path(std::uint32_t node) const;

  // Moves the events recorded so far into `out`, waiting up to `timeout` when there
  // are none yet. With `gather`, once an event is there it also waits (within `timeout`)
  // until `gather` has passed since that event or the run has ended, so that events
  // recorded in quick succession come out together rather than one wake-up each; it
  // spins for up to `spin` of that first (see wait_for). Returns false once the run has
  // ended and every event was taken. Requires a run that records events.
  bool next_events(std::vector<Event>& out, std::chrono::nanoseconds timeout,
                   std::chrono::nanoseconds gather = std::chrono::nanoseconds(0),
                   std::chrono::nanoseconds spin = std::chrono::nanoseconds(0));

  // {"run_id", "status", "elapsed", "failed", "agents": [{"name","status","started","finished","error"}]}
  std::string trace_json() const;

  explicit operator bool() const noexcept { return static_cast<bool>(state_); }

 private:
  std::shared_ptr<detail::RunState> state_;
};

}  // namespace counterpoint
