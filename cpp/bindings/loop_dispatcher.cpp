#include "loop_dispatcher.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gil.hpp"
#include "py_agents.hpp"
#include "py_payload.hpp"
#include "results.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

// The Python face of one coroutine invocation's Completion.
class AsyncCompletion {
 public:
  AsyncCompletion(Completion completion, std::shared_ptr<CancelToken> cancellation)
      : completion_(std::move(completion)), cancellation_(std::move(cancellation)) {}

  void succeed(py::object value) {
    resolve([&] { deliver(completion_, interpret_result(std::move(value)), cancellation_); });
  }
  void fail(py::object error) {
    std::string message = py::str(py::type::handle_of(error).attr("__name__"));
    const std::string text = py::str(error);
    if (!text.empty()) message += ": " + text;
    resolve([&] { completion_.fail(Failure{std::move(message), to_payload(error)}); });
  }
  void cancelled() { resolve([&] { completion_.cancelled(); }); }
  bool run_ended() const noexcept { return completion_.run_ended(); }

 private:
  template <typename F>
  void resolve(F&& body) {
    if (completion_.resolved()) {
      throw std::runtime_error("this agent invocation was already completed");
    }
    body();
  }
  Completion completion_;
  std::shared_ptr<CancelToken> cancellation_;  // a timeout abandoning this call
};

const char* status_name(RunStatus status) { return to_string(status); }

}  // namespace

LoopDispatcher::LoopDispatcher() {
  event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (event_fd_ < 0) {
    throw std::runtime_error(std::string("eventfd failed: ") + std::strerror(errno));
  }
}

LoopDispatcher::~LoopDispatcher() {
  close();
  ::close(event_fd_);
}

void LoopDispatcher::wake_locked() {
  if (signalled_) return;
  signalled_ = true;
  const std::uint64_t one = 1;
  // EAGAIN means the counter is already non-zero: the loop is awake either way.
  [[maybe_unused]] ssize_t written = ::write(event_fd_, &one, sizeof(one));
}

void LoopDispatcher::submit(AsyncAgent* agent, Invocation invocation) {
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
  starts_.push_back(Start{agent, std::move(invocation), id});
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
  ends_.push_back(End{run.id(), run.status()});
  wake_locked();
}

void LoopDispatcher::on_event_recorded(std::uint64_t run_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return;
  // One wake-up per run per batch is enough: the reader takes all of its events.
  if (std::find(event_runs_.begin(), event_runs_.end(), run_id) == event_runs_.end()) {
    event_runs_.push_back(run_id);
  }
  wake_locked();
}

py::list LoopDispatcher::take() {
  std::vector<Start> starts;
  std::vector<End> ends;
  std::vector<std::uint64_t> event_runs;
  std::vector<std::uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    std::uint64_t counter = 0;
    [[maybe_unused]] ssize_t got = ::read(event_fd_, &counter, sizeof(counter));
    signalled_ = false;
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
  py::list jobs;
  // Leaked on purpose: a static py::object would be released after the interpreter is gone.
  static const py::handle start_tag = py::str("start").release();
  static const py::handle end_tag = py::str("end").release();
  static const py::handle events_tag = py::str("events").release();
  static const py::handle cancel_tag = py::str("cancel").release();
  for (Start& start : starts) {
    py::object input = inputs_to_python(start.invocation.inputs);
    start.invocation.inputs.items.clear();
    jobs.append(py::make_tuple(start_tag, start.agent->callable(), std::move(input),
                               AsyncCompletion(std::move(start.invocation.completion),
                                               std::move(start.invocation.cancellation)),
                               start.invocation.run_id, start.id));
  }
  for (std::uint64_t run_id : event_runs) jobs.append(py::make_tuple(events_tag, run_id));
  for (std::uint64_t id : cancels) jobs.append(py::make_tuple(cancel_tag, id));
  for (const End& end : ends) {
    jobs.append(py::make_tuple(end_tag, end.run_id, status_name(end.status)));
  }
  return jobs;
}

void LoopDispatcher::close() {
  std::vector<Start> starts;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    starts.swap(starts_);
    ends_.clear();
    event_runs_.clear();
    cancels_.clear();
  }
  for (Start& start : starts) {
    start.invocation.completion.fail(
        Failure{"the event loop running this run's coroutines was closed", {}});
  }
}

void register_loop_dispatcher(py::module_& m) {
  py::class_<AsyncCompletion>(m, "AsyncCompletion")
      .def("succeed", &AsyncCompletion::succeed, py::arg("value"))
      .def("fail", &AsyncCompletion::fail, py::arg("error"))
      .def("cancelled", &AsyncCompletion::cancelled)
      .def_property_readonly("run_ended", &AsyncCompletion::run_ended);
  py::class_<LoopDispatcher, std::shared_ptr<LoopDispatcher>>(m, "LoopDispatcher")
      .def(py::init<>())
      .def("fileno", &LoopDispatcher::fileno)
      .def("take", &LoopDispatcher::take)
      .def("close", &LoopDispatcher::close, py::call_guard<py::gil_scoped_release>());
}

}  // namespace counterpoint::bindings
