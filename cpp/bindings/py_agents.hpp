#pragma once
// Python callables as engine agents.
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <pybind11/pybind11.h>

#include "counterpoint/agent.hpp"
#include "counterpoint/compiled_graph.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// Owns a Python object (a callable, a contextvars.Context) that native threads share,
// without ever touching its reference count off the GIL.
class PyRef {
 public:
  explicit PyRef(py::object object) : object_(object.release().ptr()) {}
  ~PyRef();
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  py::handle get() const noexcept { return object_; }

 private:
  PyObject* object_;
};

class LoopDispatcher;

// What the bindings attach to every run (RunOptions::context, inherited by child runs):
// the event loop its coroutine agents run on, the contextvars.Context of the code that
// started it, and the run's observer, if any (see observer.hpp). Every agent call runs in
// a fresh copy of that context, on pool threads and on the loop alike, so callbacks and
// trace context follow their own run.
struct RunContext {
  // Requires the GIL (it asks the observer what it observes).
  RunContext(std::shared_ptr<LoopDispatcher> loop, py::object context,
             std::shared_ptr<const PyRef> run_observer)
      : dispatcher(std::move(loop)),
        caller_context(std::move(context)),
        observer(std::move(run_observer)),
        observer_sees_ends(observer && py::hasattr(observer->get(), "agent_ended")) {}
  std::shared_ptr<LoopDispatcher> dispatcher;  // null: the run has no coroutine agents
  PyRef caller_context;
  std::shared_ptr<const PyRef> observer;       // null: nobody observes agent calls
  // The observer has an agent_ended: each call's outcome goes through it first. One
  // without (an emit channel alone) costs no redirect and no second take of the GIL.
  bool observer_sees_ends;
};

// Requires the GIL. Captures the calling thread's current context; `observer` may be None.
std::shared_ptr<RunContext> make_run_context(std::shared_ptr<LoopDispatcher> dispatcher,
                                             py::object observer = py::none());
// Requires the GIL. A new reference to a copy of the run's caller context, or null when
// the invocation carries none.
PyObject* copy_run_context(const Invocation& invocation);

// Resolves an invocation that must not call into Python: its run has ended (the call is
// cancelled) or the interpreter is shutting down (it fails). True if it did so.
bool ended_before_call(Completion& completion);

// Runs `body` with the GIL on the runtime's pool, for signals that arrive on threads which
// must not wait for the GIL (a timer, a run's end); skipped once the interpreter is
// shutting down. A Python exception it raises is reported as unraisable, labelled `what`.
void call_python_on_pool(std::function<void()> body, const char* what);

// How a sync agent is executed.
enum class Dispatch : std::uint8_t {
  Auto,    // inline on the oneTBB worker while measured fast, else on the thread pool
  Inline,  // always inline (the caller promises it never blocks)
  Thread,  // always on the thread pool
};

// A plain callable (or an object's bound `invoke`). Runs on the elastic pool of plain
// threads, holding the GIL only around the call; tiny ones run inline because a thread
// hop costs more than they do. An agent is inlined only after it has been measured and
// while its average stays small; once a few calls have blocked it is never inlined
// again, so an agent that sometimes blocks cannot starve oneTBB.
class SyncAgent final : public Agent, public std::enable_shared_from_this<SyncAgent> {
 public:
  SyncAgent(py::object callable, Dispatch dispatch);
  void invoke(Invocation invocation) override;

  bool runs_inline() const noexcept;
  double mean_call_seconds() const noexcept;
  static void set_inline_threshold(double seconds) noexcept;
  // Called when Python code waits for a run (invoke, batch, stream ...): if a sync agent
  // is running on this thread, it is one that waits for runs, so it must never run
  // inline, where the wait could starve the engine.
  static void note_wait_for_run() noexcept;
  static double inline_threshold() noexcept;

 private:
  void call(Invocation& invocation);
  void record(std::int64_t nanoseconds) noexcept;

  PyRef callable_;
  const Dispatch dispatch_;
  std::atomic<std::int64_t> mean_ns_{-1};  // exponential moving average; -1 = never ran
  std::atomic<std::uint32_t> blocking_calls_{0};
};

// An `async def` callable (or an object's bound `ainvoke`): each call becomes a task on
// the event loop the run was started with (see LoopDispatcher).
// The coroutine function is shared, not borrowed: queued invocations keep it alive
// whatever happens to the agent.
class AsyncAgent final : public Agent {
 public:
  explicit AsyncAgent(py::object coroutine_function)
      : function_(std::make_shared<const PyRef>(std::move(coroutine_function))) {}
  void invoke(Invocation invocation) override;
  bool hands_off() const noexcept override { return true; }  // it only queues for the loop

 private:
  std::shared_ptr<const PyRef> function_;
};


// An agent whose work runs elsewhere (a Ray task or actor): `submit(input)` starts it and
// returns a concurrent.futures.Future, and the agent is resolved from that future's done
// callback, on whichever thread completes it. No thread and no event loop waits for the
// work, which saves the two thread hops a coroutine agent awaiting it would cost.
// Abandoning the invocation (a timeout) or ending its run cancels the future, whose
// cancel() must stop the work. `submit` runs inline: it must only start the work.
class FutureAgent final : public Agent {
 public:
  explicit FutureAgent(py::object submit) : submit_(std::move(submit)) {}
  void invoke(Invocation invocation) override;
  // submit() only sends the call (a Ray task or actor call): started where the run
  // starts or its predecessor ended, the call is sent a thread hop sooner.
  bool hands_off() const noexcept override { return true; }

 private:
  PyRef submit_;
};

// A compiled graph used as one agent of another graph: each call is a child run.
class SubgraphAgent final : public Agent {
 public:
  explicit SubgraphAgent(std::shared_ptr<CompiledGraph> graph) : graph_(std::move(graph)) {}
  void invoke(Invocation invocation) override;

 private:
  std::shared_ptr<CompiledGraph> graph_;
};

}  // namespace counterpoint::bindings
