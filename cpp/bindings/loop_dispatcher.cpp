#include "loop_dispatcher.hpp"

#include <pybind11/stl.h>

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>
#include <stdexcept>
#include <optional>
#include <string>

#include "counterpoint/timer_queue.hpp"
#include "gil.hpp"
#include "in_context.hpp"
#include "observer.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "records.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

// Set while an agent task hands its call's output to the engine (AsyncCall::succeed),
// which _run_agents follows with a take() on the same thread: what the outcome queues on that
// dispatcher needs no wake-up through the file descriptor (two syscalls per agent).
thread_local const LoopDispatcher* t_take_follows = nullptr;

class TakeFollows {
 public:
  explicit TakeFollows(const LoopDispatcher* dispatcher) noexcept : outer_(t_take_follows) {
    t_take_follows = dispatcher;
  }
  ~TakeFollows() { t_take_follows = outer_; }
  TakeFollows(const TakeFollows&) = delete;
  TakeFollows& operator=(const TakeFollows&) = delete;

 private:
  const LoopDispatcher* outer_;
};

// One coroutine invocation handed to the loop: what to call, in which context, and the
// Completion its task resolves.
class AsyncCall {
 public:
  AsyncCall(const LoopDispatcher* dispatcher, py::object function, py::object argument,
            py::object context, std::uint64_t run_id, std::uint64_t invocation_id,
            Completion completion, std::shared_ptr<CancelToken> cancellation)
      : dispatcher_(dispatcher),
        function(std::move(function)),
        argument(std::move(argument)),
        context(std::move(context)),
        run_id(run_id),
        invocation_id(invocation_id),
        completion_(std::move(completion)),
        cancellation_(std::move(cancellation)) {}

  // Called by the agent task, which takes the loop's work right after (failures are
  // rare, and may come from elsewhere: they wake the loop the usual way).
  void succeed(py::object value) {
    const TakeFollows take_follows(dispatcher_);
    resolve([&] { deliver(completion_, interpret_result(std::move(value)), cancellation_); });
  }
  void fail(const py::object& error) {
    std::string message = py::str(py::type::handle_of(error).attr("__name__"));
    const std::string text = py::str(error);
    if (!text.empty()) message += ": " + text;
    Outcome outcome = raised_outcome(error, Failure{std::move(message), to_payload(error)});
    resolve([&] { completion_.resolve(std::move(outcome)); });
  }
  void cancelled() { resolve([&] { completion_.cancelled(); }); }
  // What the agent task awaits for this call: its coroutine, stepped in the call's own
  // context when `continued` (a task started for the call runs in that context already);
  // None if its run ended meanwhile, the call then cancelled, as its body must not start.
  // One crossing instead of reading the ended flag, the function, the argument and the
  // context one by one.
  py::object begin(bool continued) {
    if (completion_.run_ended()) {
      cancelled();
      return py::none();
    }
    py::object coroutine = function(argument);
    if (!continued || context.is_none()) return coroutine;
    PyObject* stepped = new_in_context(context.ptr(), coroutine.ptr());
    if (stepped == nullptr) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(stepped);
  }

  py::object function;
  py::object argument;
  py::object context;  // a copy of the run's caller context, for the task; may be None
  std::uint64_t run_id;
  std::uint64_t invocation_id;  // 0 unless a timeout may cancel this call on its own

 private:
  template <typename F>
  void resolve(F&& body) {
    if (completion_.resolved()) {
      throw std::runtime_error("this agent invocation was already completed");
    }
    body();
  }
  const LoopDispatcher* dispatcher_;  // compared, never dereferenced
  Completion completion_;
  std::shared_ptr<CancelToken> cancellation_;  // a timeout abandoning this call
};

// Everything the loop has to do after one wake-up. Python lists, made once here: the
// loop reads every field of every LoopWork, often several times per run.
struct LoopWork {
  py::list calls;    // AsyncCall, higher priorities first
  py::list cancels;  // invocation ids whose timeout passed
  py::list ended;    // ids of runs that ended: cancel their leftover tasks, wake awaiters
  py::list events;   // ids of runs with new events to stream
};

}  // namespace

LoopDispatcher::LoopDispatcher(double event_gather_seconds)
    : event_gather_seconds_(event_gather_seconds) {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    throw std::system_error(errno, std::generic_category(), "eventfd failed");
  }
}

LoopDispatcher::~LoopDispatcher() {
  close();
  ::close(event_fd_);
}

void LoopDispatcher::wake_locked() {
  signalled_ = true;
  if (fd_armed_ || t_take_follows == this) return;
  fd_armed_ = true;
  const std::uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop is awake either way.
  [[maybe_unused]] ssize_t written = ::write(event_fd_, &one, sizeof(one));
}

void LoopDispatcher::submit(std::shared_ptr<const PyRef> function, Invocation invocation) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (closed_) {
    lock.unlock();
    invocation.completion.fail(
        Failure{"the event loop running this run's coroutines was closed", {}});
    return;
  }
  std::uint64_t id = 0;
  std::shared_ptr<CancelToken> token = invocation.cancellation;
  if (token) id = next_id_++;
  // Checked under the lock on_run_finished takes after the run's end: an id is either
  // not added, or added before that end erases it.
  if (!invocation.completion.run_ended()) coroutine_runs_.insert(invocation.run_id);
  starts_.push_back(Start{std::move(function), std::move(invocation), id});
  wake_locked();
  lock.unlock();
  if (token) {
    token->on_cancel([weak = weak_from_this(), id] {
      if (auto self = weak.lock()) {
        std::lock_guard<std::mutex> guard(self->mutex_);
        if (self->closed_) return;
        self->cancels_.push_back(id);
        self->wake_locked();
      }
    });
  }
}

void LoopDispatcher::on_run_finished(const RunHandle& run) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  ends_.push_back(run.id());
  const bool had_coroutines = coroutine_runs_.erase(run.id()) > 0;
  if (had_coroutines || !run.nested()) {
    wake_locked();  // tasks to cancel, or an ainvoke or astream awaiting it
    return;
  }
  // A child run that ran no coroutine here: nothing on the loop waits for its end, which
  // the next take() carries along. A wake-up each would cost a graph fanning out to ten
  // subgraphs ten turns of the loop, each taking the GIL from the agents.
  signalled_ = true;
}

void LoopDispatcher::on_event_recorded(std::uint64_t run_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  // One wake-up per run per batch is enough: the reader takes all of its events.
  if (std::find(event_runs_.begin(), event_runs_.end(), run_id) == event_runs_.end()) {
    event_runs_.push_back(run_id);
  }
  if (event_gather_seconds_ <= 0) {
    wake_locked();
    return;
  }
  // Told once per batch (an event into the run's empty queue). The loop is woken for it
  // a gather window later, or sooner by whatever else wakes it (the run's end, a
  // coroutine to start), whose take() carries it along: astream then takes the events
  // of a fast run at once instead of the loop waking, and taking the GIL from the
  // agents, every few events.
  signalled_ = true;
  if (events_due_scheduled_) return;
  events_due_scheduled_ = true;
  TimerQueue::instance().schedule_after(event_gather_seconds_, [weak = weak_from_this()] {
    if (auto self = weak.lock()) self->events_due();
  });
}

void LoopDispatcher::events_due() {
  std::lock_guard<std::mutex> lock(mutex_);
  events_due_scheduled_ = false;
  if (!closed_ && !event_runs_.empty()) wake_locked();
}

void LoopDispatcher::taken_locked() {
  if (fd_armed_) {
    std::uint64_t counter = 0;
    [[maybe_unused]] ssize_t got = ::read(event_fd_, &counter, sizeof(counter));
    fd_armed_ = false;
  }
  signalled_ = false;
}

py::object LoopDispatcher::call_of(Start& start) {
  py::object input = inputs_to_python(start.invocation.inputs);
  observe_call(start.invocation, input);
  start.invocation.inputs.items.clear();
  PyObject* context = copy_run_context(start.invocation);
  if (context == nullptr && PyErr_Occurred()) throw py::error_already_set();
  return py::cast(AsyncCall(this, py::reinterpret_borrow<py::object>(start.function->get()),
                            std::move(input),
                            context ? py::reinterpret_steal<py::object>(context) : py::none(),
                            start.invocation.run_id, start.id,
                            std::move(start.invocation.completion),
                            std::move(start.invocation.cancellation)));
}

py::object LoopDispatcher::continuation(std::uint64_t run_id) {
  std::optional<Start> start;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!signalled_ || starts_.size() != 1 || !ends_.empty() || !event_runs_.empty() ||
        !cancels_.empty() || starts_.front().invocation.run_id != run_id ||
        starts_.front().id != 0) {
      return py::none();
    }
    taken_locked();
    start.emplace(std::move(starts_.front()));
    starts_.clear();
  }
  drain_released_objects();
  return call_of(*start);
}

py::object LoopDispatcher::take() {
  std::vector<Start> starts;
  std::vector<std::uint64_t> ends;
  std::vector<std::uint64_t> event_runs;
  std::vector<std::uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!signalled_) return py::none();
    taken_locked();
    starts.swap(starts_);
    ends.swap(ends_);
    event_runs.swap(event_runs_);
    cancels.swap(cancels_);
  }
  drain_released_objects();
  // Of the coroutines ready together, higher-priority agents start first.
  std::stable_sort(starts.begin(), starts.end(), [](const Start& a, const Start& b) {
    return a.invocation.priority > b.invocation.priority;
  });
  LoopWork work;
  for (Start& start : starts) work.calls.append(call_of(start));
  for (std::uint64_t id : cancels) work.cancels.append(id);
  for (std::uint64_t run_id : event_runs) work.events.append(run_id);
  for (std::uint64_t run_id : ends) work.ended.append(run_id);
  return py::cast(std::move(work));
}

void LoopDispatcher::close() {
  std::vector<Start> starts;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    starts.swap(starts_);
    ends_.clear();
    coroutine_runs_.clear();
    event_runs_.clear();
    cancels_.clear();
  }
  for (Start& start : starts) {
    start.invocation.completion.fail(
        Failure{"the event loop running this run's coroutines was closed", {}});
  }
}

void register_loop_dispatcher(py::module_& m) {
  py::class_<AsyncCall>(m, "AsyncCall", "One coroutine agent invocation for the event loop.")
      .def_readonly("context", &AsyncCall::context)
      .def_readonly("run_id", &AsyncCall::run_id)
      .def_readonly("invocation_id", &AsyncCall::invocation_id)
      .def("succeed", &AsyncCall::succeed, py::arg("value"))
      .def("fail", &AsyncCall::fail, py::arg("error"))
      .def("cancelled", &AsyncCall::cancelled)
      .def("begin", &AsyncCall::begin, py::arg("continued"));
  py::class_<LoopWork>(m, "LoopWork", "What an event loop has to do after a wake-up.")
      .def_readonly("calls", &LoopWork::calls)
      .def_readonly("cancels", &LoopWork::cancels)
      .def_readonly("ended", &LoopWork::ended)
      .def_readonly("events", &LoopWork::events);
  py::class_<LoopDispatcher, std::shared_ptr<LoopDispatcher>>(m, "LoopDispatcher")
      .def(py::init<double>(), py::arg("event_gather") = 0.0)
      .def("fileno", &LoopDispatcher::fileno)
      .def("take", &LoopDispatcher::take)
      .def("continuation", &LoopDispatcher::continuation, py::arg("run_id"),
           "The one call queued, if it is all that is queued, belongs to run `run_id` and no "
           "timeout may cancel it on its own (taken); else None, and the queue is left as "
           "it is. The agent task that just ran an agent of that run runs it next: a chain "
           "of coroutine agents then skips take()'s batch.")
      .def("close", &LoopDispatcher::close, py::call_guard<py::gil_scoped_release>());
}

}  // namespace counterpoint::bindings
