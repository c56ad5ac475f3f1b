#pragma once
// Many runs of one compiled graph, one per input, with a bounded number in flight.
//
//   BatchOptions options;
//   options.make_options = [&](std::size_t i) { RunOptions o; o.input = inputs[i]; return o; };
//   Batch batch(graph, inputs.size(), std::move(options));
//   std::vector<Batch::Finished> done;
//   while (batch.next(done, 20ms)) { for (auto& f : done) use(f.index, f.run); done.clear(); }
//
// The window is refilled by the thread that ends a run (its run-finished observer), so a
// caller that waits in slices (to notice Ctrl-C) never delays the next run. Finished runs
// come back in the order they finish, each with its input index; a failed, cancelled or
// timed-out run is just that run's result and never stops its siblings.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "counterpoint/compiled_graph.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint {

struct BatchOptions {
  // Runs in flight at once; 0 = kDefaultWindow. Memory follows the window (plus the
  // finished runs not yet taken), never the number of inputs.
  std::size_t window = 0;
  static constexpr std::size_t kDefaultWindow = 1024;
  // The options of run `index` (its input, and for durable runs its key, node hook,
  // observer and restored outcomes). Called once per index, in index order, with no lock
  // held, on the thread that refills the window: the constructor's caller for the first
  // window, then whichever engine or pool thread ended a run. It must not wait for a run.
  // If it throws, that item finishes without a run and with the exception's message.
  std::function<RunOptions(std::size_t index)> make_options;
  // Called (with no lock held, on any thread) whenever finished runs become available or
  // the batch completes: lets an event loop wake up instead of polling. Must not block.
  std::function<void()> on_ready;
  // Both callbacks live as long as the batch's last run, which may be after ~Batch
  // returns (a call may be in progress then, as ~Batch never waits for one; it waits for
  // nothing, so it is safe to run under the embedder's lock, e.g. the GIL): capture what
  // they use by shared ownership, never by reference to the caller's frame. ~Batch stops
  // any further call to on_ready and to make_options.
};

class Batch {
 public:
  struct Finished {
    std::size_t index = 0;
    RunHandle run;      // empty if the run could not start
    std::string error;  // why it could not start (make_options threw, shutting down ...)
  };

  // Starts the first window of runs before returning. Throws EngineError for a null
  // graph or a missing make_options.
  Batch(std::shared_ptr<CompiledGraph> graph, std::size_t count, BatchOptions options);
  // Cancels what is still running; runs that finish later are dropped.
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;

  // Moves the runs finished so far into `out` (appending), waiting up to `timeout` until
  // `at_least` of them (or all that remain, if fewer) have finished. Returns false once
  // every run has finished and been taken. Asking for several at a time lets a caller
  // that must take a lock to use them (the GIL) wake once per group, not once per run.
  // Waiting on a oneTBB worker throws EngineError; on a pool thread it counts as a
  // nested wait (ElasticThreadPool::BlockedScope).
  bool next(std::vector<Finished>& out, std::chrono::nanoseconds timeout,
            std::size_t at_least = 1);
  // Starts no further runs and cancels those in flight; each still comes back from
  // next(), cancelled, and the inputs never started come back with an empty run and
  // error "cancelled". Idempotent.
  void cancel();
  // Like cancel(), but the runs in flight end Interrupted (Ctrl-C, process exit).
  void interrupt();

  std::size_t size() const noexcept;
  std::size_t window() const noexcept;
  std::size_t started() const;    // runs started (or failed to start) so far
  std::size_t in_flight() const;  // started and not yet finished
  std::size_t most_in_flight() const;  // the peak of in_flight(), for tests and stats
  bool done() const;              // every item finished (taken or not)

  class State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace counterpoint
