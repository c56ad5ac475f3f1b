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
#include "records.hpp"
#include "register.hpp"
#include "results.hpp"

namespace counterpoint::bindings {

namespace {

NodeStatus outcome_status(const Outcome& outcome) {
  switch (outcome.kind) {
    case Outcome::Kind::Succeeded: return NodeStatus::Succeeded;
    case Outcome::Kind::NeedsReview: return NodeStatus::NeedsReview;
    case Outcome::Kind::NeedsInput: return NodeStatus::NeedsInput;
    case Outcome::Kind::Cancelled: return NodeStatus::Cancelled;
    case Outcome::Kind::Failed:
      return outcome.failure.kind == FailureKind::Timeout ? NodeStatus::TimedOut
                                                          : NodeStatus::Failed;
  }
  return NodeStatus::Failed;
}

// One agent outcome waiting to be written. It names its run by id and key rather than
// holding it: once delivered, nothing here keeps the run alive. (A held run would keep
// its agents' failures, and a store's StoreError holds, through its traceback, the
// writer's frame that holds this object: a cycle through C++ that no GC can break.)
class PendingCheckpoint {
 public:
  PendingCheckpoint(const RunHandle& run, std::uint32_t node, Outcome outcome, Completion deliver)
      : run_id_(run.id()),
        run_key_(run.key()),
        agent_(run.checkpoint_path(node)),
        outcome_(std::move(outcome)),
        deliver_(std::move(deliver)) {}

  std::uint64_t run_id() const { return run_id_; }
  const std::string& run_key() const { return run_key_; }
  // The agent's checkpoint path: its name in a root run, "<delegating agent>/<agent>"
  // (and "#<n>" for a loop's n-th iteration) in a child run.
  const std::string& agent() const { return agent_; }
  NodeStatus status() const { return outcome_status(outcome_); }
  py::object output() const { return from_payload(outcome_.output); }
  py::object routes() const {
    if (!outcome_.routed) return py::none();
    return py::cast(outcome_.routes);
  }
  py::dict usage() const { return usage_to_python(outcome_.usage); }
  std::string message() const { return outcome_.failure.message; }
  // A failure's exception; for an output paused for review, what its gate recorded
  // (ReviewSpec::pause_details); else None.
  py::object error() const { return from_payload(outcome_.failure.error); }
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
  std::uint64_t run_id_;
  std::string run_key_;
  std::string agent_;
  Outcome outcome_;
  Completion deliver_;
};

// What a checkpoint writer has to do after one wait.
struct CheckpointWork {
  py::list outcomes;          // PendingCheckpoint, to write then deliver
  std::vector<RunEnd> ended;  // durable runs that ended, with their keys
};

class CheckpointHook final : public NodeHook, public RunObserver {
 public:
  // Durable runs report their end here too, so the store's status follows the run even
  // when nobody waits on it.
  void on_run_finished(const RunHandle& run) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      ended_.push_back(RunEnd{run.id(), run.key(), run.status()});
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

  // With the GIL: waits up to `timeout` seconds (GIL released) for work, and returns a
  // CheckpointWork. Outcomes come first: a run ends only after its last outcome was
  // delivered.
  py::object take(double timeout) {
    std::deque<PendingCheckpoint> taken;
    std::vector<RunEnd> ended;
    {
      py::gil_scoped_release nogil;
      std::unique_lock<std::mutex> lock(mutex_);
      ready_.wait_for(lock, std::chrono::duration<double>(timeout),
                      [&] { return !queue_.empty() || !ended_.empty() || closed_; });
      taken.swap(queue_);
      ended.swap(ended_);
    }
    CheckpointWork work;
    for (auto& item : taken) work.outcomes.append(py::cast(std::move(item)));
    work.ended = std::move(ended);
    return py::cast(std::move(work));
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
  std::vector<RunEnd> ended_;
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
      .def_property_readonly("error", &PendingCheckpoint::error)
      .def_property_readonly("confidence", &PendingCheckpoint::confidence)
      .def("deliver", &PendingCheckpoint::deliver)
      .def("fail", &PendingCheckpoint::fail, py::arg("message"), py::arg("error") = py::none());
  py::class_<CheckpointWork>(m, "CheckpointWork")
      .def_readonly("outcomes", &CheckpointWork::outcomes)
      .def_readonly("ended", &CheckpointWork::ended);
  py::class_<CheckpointHook, NodeHook, std::shared_ptr<CheckpointHook>>(m, "CheckpointHook")
      .def(py::init<>())
      .def("take", &CheckpointHook::take, py::arg("timeout"))
      .def("close", &CheckpointHook::close, py::call_guard<py::gil_scoped_release>());
}

}  // namespace counterpoint::bindings
