#pragma once
// The contract between the engine and whatever executes an agent.
//
// invoke() is called on a oneTBB worker and must not block on the agent's work: it
// either finishes a tiny agent inline or hands the work to an executor (thread pool,
// event loop) and returns. The Completion it receives must be resolved exactly once,
// from any thread; a Completion dropped unresolved fails the agent, so no invocation
// can be lost silently.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "counterpoint/payload.hpp"

namespace counterpoint {

class CompiledGraph;
namespace detail {
struct RunState;
}

// One input of an agent. `failed` is set only for a Settled join, whose failed
// predecessors arrive with their error object as `value`.
struct InputItem {
  std::string_view name;
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

// Why an agent failed. `error` carries the embedder's exception object, `message` a
// human-readable summary the engine can log and trace without the embedder.
struct Failure {
  std::string message;
  Payload error;
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

  void succeed(Payload output);
  // Succeeds and delivers the output only to the named successors; the others are
  // skipped (unless another predecessor delivers to them). Fails the agent if a name is
  // not one of its successors.
  void succeed_routed(Payload output, const std::vector<std::string>& routes);
  // The agent's result is the result of running `graph` on `input`, natively, as a
  // child of this run: cancelled with it, its events forwarded under "<agent>/".
  // With `then`, the child's sink output(s) go to `then`, whose result is the agent's;
  // `then` may delegate again, which is how loops iterate without a Python loop.
  void delegate(std::shared_ptr<CompiledGraph> graph, Payload input,
                std::shared_ptr<class Agent> then = nullptr);
  void fail(Failure failure);
  // The agent stopped because its run was cancelled (e.g. a coroutine was cancelled).
  void cancelled();

  // True once the run has ended (cancelled, failed elsewhere): an agent may stop early.
  bool run_ended() const noexcept;
  bool resolved() const noexcept { return !run_; }

 private:
  std::shared_ptr<detail::RunState> run_;
  std::uint32_t node_ = 0;
};

struct Invocation {
  std::string_view agent_name;
  std::uint64_t run_id = 0;
  int priority = 0;
  Inputs inputs;
  // Whatever the embedder attached to the run (the bindings: the event loop that runs
  // this run's coroutines). May be null.
  std::shared_ptr<void> run_context;
  Completion completion;
};

class Agent {
 public:
  virtual ~Agent() = default;
  virtual void invoke(Invocation invocation) = 0;
};

}  // namespace counterpoint
