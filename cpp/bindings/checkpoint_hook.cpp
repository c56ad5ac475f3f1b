// Checkpoints: every agent outcome of a durable run waits in a native queue until the
// Python store has written it, and only then reaches the run. A killed process therefore
// never loses an output that a later agent already consumed.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>

#include <pybind11/stl.h>

#include "counterpoint/run.hpp"
#include "gil.hpp"
#include "py_payload.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

const char* outcome_status(const Outcome& outcome) {
  switch (outcome.kind) {
    case Outcome::Kind::Succeeded: return "succeeded";
    case Outcome::Kind::NeedsReview: return "needs_review";
    case Outcome::Kind::Cancelled: return "cancelled";
    case Outcome::Kind::Failed:
      return outcome.failure.kind == FailureKind::Timeout ? "timed_out" : "failed";
  }
  return "failed";
}

// One agent outcome waiting to be written.
class PendingCheckpoint {
 public:
  PendingCheckpoint(RunHandle run, std::uint32_t node, Outcome outcome, Completion deliver)
      : run_(std::move(run)), node_(node), outcome_(std::move(outcome)), deliver_(std::move(deliver)) {}

  std::uint64_t run_id() const { return run_.id(); }
  const std::string& run_key() const { return run_.key(); }
  std::string agent() const { return std::string(deliver_.agent_name()); }
  const char* status() const { return outcome_status(outcome_); }
  py::object output() const { return from_payload(outcome_.output); }
  py::object routes() const {
    if (!outcome_.routed) return py::none();
    return py::cast(outcome_.routes);
  }
  py::dict usage() const {
    py::dict out;
    for (const auto& [name, amount] : outcome_.usage) out[py::str(name)] = amount;
    return out;
  }
  std::string message() const { return outcome_.failure.message; }
  py::object confidence() const {
    return outcome_.confidence < 0 ? py::object(py::none()) : py::object(py::float_(outcome_.confidence));
  }

  // Written: let the run have it.
  void deliver() {
    Outcome outcome = std::move(outcome_);
    py::gil_scoped_release nogil;
    deliver_.resolve(std::move(outcome));
  }
  // Could not be written (e.g. not serializable): the agent fails with `message`.
  void fail(const std::string& message, py::object error) {
    Failure failure{message, to_payload(std::move(error)), FailureKind::Error};
    outcome_ = Outcome{};
    py::gil_scoped_release nogil;
    deliver_.fail(std::move(failure));
  }

 private:
  RunHandle run_;
  std::uint32_t node_;
  Outcome outcome_;
  Completion deliver_;
};

class CheckpointHook final : public NodeHook, public RunObserver {
 public:
  // Durable runs report their end here too, so the store's status follows the run even
  // when nobody waits on it.
  void on_run_finished(const RunHandle& run) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      ended_.emplace_back(run.key(), to_string(run.status()));
    }
    ready_.notify_one();
  }

  void on_outcome(const RunHandle& run, std::uint32_t node, Outcome outcome,
                  Completion deliver) override {
    std::unique_lock<std::mutex> lock(mutex_);
    if (closed_) {
      lock.unlock();
      deliver.fail(Failure{"the checkpoint store was closed before this output was written", {}});
      return;
    }
    queue_.emplace_back(run, node, std::move(outcome), std::move(deliver));
    lock.unlock();
    ready_.notify_one();
  }

  // With the GIL: waits up to `timeout` seconds (GIL released) for work, and returns
  // (outcomes to write, [(run_key, status)] of runs that ended). Outcomes come first:
  // a run ends only after its last outcome was delivered.
  py::tuple take(double timeout) {
    std::deque<PendingCheckpoint> taken;
    std::vector<std::pair<std::string, std::string>> ended;
    {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait_for(lock, std::chrono::duration<double>(timeout),
                      [&] { return !queue_.empty() || !ended_.empty() || closed_; });
      taken.swap(queue_);
      ended.swap(ended_);
    }
    py::list items;
    for (auto& item : taken) items.append(py::cast(std::move(item)));
    return py::make_tuple(std::move(items), py::cast(ended));
  }

  void close() {
    std::deque<PendingCheckpoint> abandoned;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      closed_ = true;
      abandoned.swap(queue_);
    }
    ready_.notify_all();
    // Dropping them fails each agent through its Completion, so no run is left hanging.
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<PendingCheckpoint> queue_;
  std::vector<std::pair<std::string, std::string>> ended_;
  bool closed_ = false;
};

}  // namespace

void register_checkpoints(py::module_& m) {
  py::class_<NodeHook, std::shared_ptr<NodeHook>>(m, "NodeHook");
  py::class_<PendingCheckpoint>(m, "PendingCheckpoint")
      .def_property_readonly("run_id", &PendingCheckpoint::run_id)
      .def_property_readonly("run_key", &PendingCheckpoint::run_key)
      .def_property_readonly("agent", &PendingCheckpoint::agent)
      .def_property_readonly("status", &PendingCheckpoint::status)
      .def_property_readonly("output", &PendingCheckpoint::output)
      .def_property_readonly("routes", &PendingCheckpoint::routes)
      .def_property_readonly("usage", &PendingCheckpoint::usage)
      .def_property_readonly("message", &PendingCheckpoint::message)
      .def_property_readonly("confidence", &PendingCheckpoint::confidence)
      .def("deliver", &PendingCheckpoint::deliver)
      .def("fail", &PendingCheckpoint::fail, py::arg("message"), py::arg("error") = py::none());
  py::class_<CheckpointHook, NodeHook, std::shared_ptr<CheckpointHook>>(m, "CheckpointHook")
      .def(py::init<>())
      .def("take", &CheckpointHook::take, py::arg("timeout"))
      .def("close", &CheckpointHook::close, py::call_guard<py::gil_scoped_release>());
}

}  // namespace counterpoint::bindings
