#pragma once
// The contract between the engine and whatever executes an agent.
//
// invoke() is called on a oneTBB worker and must not block on the agent's work: it
// either finishes a tiny agent inline or hands the work to an executor (thread pool,
// event loop) and returns. The Completion it receives must be resolved exactly once,
// from any thread; a Completion dropped unresolved fails the agent, so no invocation
// can be lost silently.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "counterpoint/event.hpp"
#include "counterpoint/payload.hpp"

namespace counterpoint {

class CompiledGraph;
namespace detail {
struct RunState;
}

// One input of an agent. `failed` is set only for a Settled join, whose failed
// predecessors arrive with their error object as `value`. Everything here is owned:
// inputs cross threads and may outlive the run (and the plan) that produced them.
struct InputItem {
  std::string name;
  Payload value;
  bool failed = false;
};

// What an agent receives, following the data model: an entry agent gets the run input,
// an agent with one predecessor gets that output, an agent with several gets all of
// them by predecessor name.
struct Inputs {
  enum class Kind { RunInput, Single, Joined };
  Kind kind = Kind::RunInput;
  // RunInput / Single: exactly one item (the name is empty for RunInput).
  std::vector<InputItem> items;
};

enum class FailureKind : std::uint8_t {
  Error,        // the agent raised
  Timeout,      // the agent did not finish in time
  CircuitOpen,  // its circuit breaker refused the call
  Rejected,     // a human reviewer rejected its output
  Budget,       // its run's budget was spent before it could produce output
};

// Why an agent failed. `error` carries the embedder's exception object, `message` a
// human-readable summary the engine can log and trace without the embedder.
struct Failure {
  std::string message;
  Payload error;
  FailureKind kind = FailureKind::Error;
};

// What an agent reports it consumed, e.g. {{"tokens", 812}, {"cost", 0.004}}.
using Usage = std::vector<std::pair<std::string, double>>;

// The result of one invocation of an agent.
struct Outcome {
  // NeedsInput: the agent asked a person a question (an interrupt) and stopped; a
  // durable run resumed with the answer calls it again.
  enum class Kind : std::uint8_t { Succeeded, Failed, Cancelled, NeedsReview, NeedsInput };
  Kind kind = Kind::Succeeded;
  Payload output;    // Succeeded; NeedsReview: the output awaiting a decision; NeedsInput: the question
  Failure failure;   // Failed; NeedsReview, NeedsInput: `message` says why it waits
  bool routed = false;              // Succeeded: deliver only to `routes` (successor names)
  // NeedsReview, NeedsInput: it is not this agent that waits but agents of the child run
  // it delegated to, whose own outcomes say so (a checkpoint keeps those, not this one).
  bool paused_below = false;
  std::vector<std::string> routes;
  Usage usage;
  double confidence = -1.0;         // NeedsReview: the confidence that triggered it
  // When the agent's body returned, if the agent timed itself anyway; the engine then
  // records it as the agent's finish instead of reading the clock again. Unset (zero):
  // the engine reads the clock when the outcome reaches the run.
  std::chrono::steady_clock::time_point finished_at{};

  static Outcome success(Payload output) {
    Outcome outcome;
    outcome.output = std::move(output);
    return outcome;
  }
  static Outcome failed(Failure failure) {
    Outcome outcome;
    outcome.kind = Kind::Failed;
    outcome.failure = std::move(failure);
    return outcome;
  }
  static Outcome cancelled() {
    Outcome outcome;
    outcome.kind = Kind::Cancelled;
    return outcome;
  }
  static Outcome needs_input(Payload question, std::string why) {
    Outcome outcome;
    outcome.kind = Kind::NeedsInput;
    outcome.output = std::move(question);
    outcome.failure.message = std::move(why);
    return outcome;
  }
};

// Where an outcome goes when it is not (yet) the run's business: a policy deciding
// whether to retry, a checkpoint writer persisting it first.
class Resolver {
 public:
  virtual ~Resolver() = default;
  virtual void resolve(Outcome outcome) = 0;
};

// Lets whoever is waiting on an invocation abandon it (a timeout, a cancelled run);
// executors register how to stop their work early, e.g. cancel a coroutine.
class CancelToken {
 public:
  // Idempotent; runs the callbacks once, on the calling thread.
  void cancel();
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }
  // Runs `callback` on cancellation, at once if already cancelled. Must not block.
  void on_cancel(std::function<void()> callback);

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::vector<std::function<void()>> callbacks_;
};

// Lets an agent add its own events to its run's event stream while it runs: data it
// reports (Custom) and the chunks a language model it calls streams (Message). Holds the
// run weakly: a channel kept past its run keeps nothing alive and publishes nothing.
class EventChannel {
 public:
  EventChannel() = default;
  EventChannel(std::weak_ptr<detail::RunState> run, std::uint32_t node) noexcept
      : run_(std::move(run)), node_(node) {}
  // Appended to the root run's events, named by the agent's path, if the run records
  // events and is still running; dropped otherwise. True if it was recorded. Any thread.
  bool publish(EventKind kind, Payload payload, std::string message = {}) const;
  // A step of the agent's policies (Queued, Attempt, Retry, Fallback, Reviewing), for
  // its run's timeline: recorded only if the run records that kind. Any thread.
  void mark(EventKind kind, std::string message, std::uint32_t attempt = 0, double delay = 0.0,
            const Payload& payload = {}) const;

 private:
  bool push(EventKind kind, Payload payload, std::string message, std::uint32_t attempt,
            double delay) const;

  std::weak_ptr<detail::RunState> run_;
  std::uint32_t node_ = 0;
};

class Completion {
 public:
  Completion() = default;
  Completion(std::shared_ptr<detail::RunState> run, std::uint32_t node) noexcept;
  Completion(Completion&&) noexcept = default;
  Completion& operator=(Completion&&) noexcept;
  Completion(const Completion&) = delete;
  Completion& operator=(const Completion&) = delete;
  ~Completion();

  // A completion for the same agent whose outcome goes to `target` instead of to the
  // run; this one stays unresolved (the target usually holds it).
  Completion redirect(std::shared_ptr<Resolver> target) const;

  void resolve(Outcome outcome);
  void succeed(Payload output) { resolve(Outcome::success(std::move(output))); }
  // Succeeds and delivers the output only to the named successors; the others are
  // skipped (unless another predecessor delivers to them). The agent fails if a name is
  // not one of its successors.
  void succeed_routed(Payload output, std::vector<std::string> routes);
  // The agent's result is the result of running `graph` on `input`, natively, as a
  // child of this run: cancelled with it, its events forwarded under "<agent>/".
  // With `then`, the child's sink output(s) go to `then`, whose result is the agent's;
  // `then` may delegate again, which is how loops iterate without a Python loop.
  // Returns a function that cancels the child run (for a timeout that abandons this
  // invocation), or an empty one if no child run started.
  std::function<void()> delegate(std::shared_ptr<CompiledGraph> graph, Payload input,
                                 std::shared_ptr<class Agent> then = nullptr);
  void fail(Failure failure) { resolve(Outcome::failed(std::move(failure))); }
  // The agent stopped because its run was cancelled (e.g. a coroutine was cancelled).
  void cancelled() { resolve(Outcome::cancelled()); }

  // True once the run has ended (cancelled, failed elsewhere): an agent may stop early.
  bool run_ended() const noexcept;
  // True once the run has spent its budget: new invocations should not start.
  bool budget_exhausted() const noexcept;
  // Runs `callback` when the run ends (at once if it has ended). Must not block.
  void when_run_ends(std::function<void()> callback) const;
  bool resolved() const noexcept { return !run_; }
  // The agent's name (a copy: the caller may outlive the run); empty once resolved.
  std::string agent_name() const;
  // The agent's path from the root run, as its events name it: "<delegating agent>/<agent>"
  // in a child run. Empty once resolved.
  std::string agent_path() const;
  // The agent's path as a durable run checkpoints it: agent_path(), except that the n-th
  // child run one call of a delegating agent starts (a loop's n-th iteration, n >= 2) is
  // "<delegating agent>#<n>/". Stable across retries and resumes. Empty once resolved.
  std::string checkpoint_path() const;
  // True if the agent's run checkpoints its outcomes (a durable run, at any depth): only
  // such a run can pause for a person and be resumed.
  bool durable() const noexcept;
  // A channel for the agent's own events; inert once resolved.
  EventChannel channel() const noexcept;
  // Records a step of the agent's policies (EventChannel::mark) if its run records that
  // kind; costs a flag test otherwise.
  void mark(EventKind kind, std::string message, std::uint32_t attempt = 0, double delay = 0.0,
            const Payload& payload = {}) const;

 private:
  std::shared_ptr<detail::RunState> run_;
  std::uint32_t node_ = 0;
  // How many child runs this call has delegated to so far: a `then` agent continues the
  // call with this completion, so each iteration of a loop gets its own checkpoints.
  std::uint32_t delegations_ = 0;
  std::shared_ptr<Resolver> target_;
};

struct Invocation {
  std::string agent_name;  // owned: invocations cross threads and may outlive the plan
  std::uint64_t run_id = 0;
  int priority = 0;
  Inputs inputs;
  // Whatever the embedder attached to the run (the bindings: the event loop that runs
  // this run's coroutines). May be null.
  std::shared_ptr<void> run_context;
  // Set when someone may abandon this invocation (policies with a timeout).
  std::shared_ptr<CancelToken> cancellation;
  // Which attempt of a policy-wrapped agent this is, from 1 (0: no policies decide it).
  std::uint32_t attempt = 0;
  Completion completion;
};

class Agent {
 public:
  virtual ~Agent() = default;
  virtual void invoke(Invocation invocation) = 0;
  // True if invoke() only hands the work to another executor (an event loop, a remote
  // cluster) and returns at once: it runs no user code and never blocks. The engine then
  // invokes it on the thread that resolved its predecessors (often that same event loop)
  // instead of handing the message to a oneTBB worker first, which saves a thread hop
  // per agent.
  virtual bool hands_off() const noexcept { return false; }
};

}  // namespace counterpoint
