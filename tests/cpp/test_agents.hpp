#pragma once
// Agents for the run tests. Two executors matter to the engine: an agent that resolves
// its Completion inside invoke() (on the oneTBB worker), and one that hands the work to
// the runtime's thread pool and resolves later from that thread.
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "counterpoint/counterpoint.hpp"

namespace counterpoint {
// Readable CHECK_EQ failures.
inline std::ostream& operator<<(std::ostream& out, RunStatus s) { return out << to_string(s); }
inline std::ostream& operator<<(std::ostream& out, NodeStatus s) { return out << to_string(s); }
inline std::ostream& operator<<(std::ostream& out, EventKind k) { return out << to_string(k); }
inline std::ostream& operator<<(std::ostream& out, Inputs::Kind k) {
  switch (k) {
    case Inputs::Kind::RunInput: return out << "RunInput";
    case Inputs::Kind::Single: return out << "Single";
    case Inputs::Kind::Joined: return out << "Joined";
  }
  return out << "?";
}
}  // namespace counterpoint

namespace cptest {

using namespace counterpoint;
using std::chrono::milliseconds;

template <class T>
Payload make(T value) {
  return std::make_shared<T>(std::move(value));
}
inline int as_int(const Payload& p) { return p ? *static_cast<const int*>(p.get()) : -1; }
inline std::string as_str(const Payload& p) {
  return p ? *static_cast<const std::string*>(p.get()) : std::string("<null>");
}

// What one invocation saw, copied out so tests can inspect it after the run.
struct Seen {
  std::uint64_t run_id = 0;
  Inputs::Kind kind = Inputs::Kind::RunInput;
  std::vector<std::string> names;
  std::vector<Payload> values;
  std::vector<bool> failed;
  std::shared_ptr<void> context;
};

using Body = std::function<Payload(const Inputs&)>;

class TestAgent : public Agent {
 public:
  int calls() const { return calls_.load(); }
  std::vector<Seen> seen() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return seen_;
  }

 protected:
  void record(const Invocation& invocation) {
    calls_.fetch_add(1);
    Seen seen;
    seen.run_id = invocation.run_id;
    seen.kind = invocation.inputs.kind;
    for (const auto& item : invocation.inputs.items) {
      seen.names.emplace_back(item.name);
      seen.values.push_back(item.value);
      seen.failed.push_back(item.failed);
    }
    seen.context = invocation.run_context;
    std::lock_guard<std::mutex> lock(mutex_);
    seen_.push_back(std::move(seen));
  }

 private:
  std::atomic<int> calls_{0};
  mutable std::mutex mutex_;
  std::vector<Seen> seen_;
};

// Completes synchronously inside invoke().
class InlineAgent : public TestAgent {
 public:
  explicit InlineAgent(Body body) : body_(std::move(body)) {}
  void invoke(Invocation invocation) override {
    record(invocation);
    invocation.completion.succeed(body_(invocation.inputs));
  }

 private:
  Body body_;
};

// Sleeps on a pool thread (a blocking agent), then succeeds with body(inputs), or fails
// with `failure_message` when one is set.
class PooledAgent : public TestAgent {
 public:
  PooledAgent(milliseconds delay, Body body, std::string failure_message = {})
      : delay_(delay), body_(std::move(body)), failure_message_(std::move(failure_message)) {}

  void invoke(Invocation invocation) override {
    record(invocation);
    // std::function needs a copyable callable, and an Invocation is move-only.
    auto shared = std::make_shared<Invocation>(std::move(invocation));
    Runtime::instance().pool().submit([this, shared] {
      std::this_thread::sleep_for(delay_);
      saw_run_ended_.store(shared->completion.run_ended());
      if (!failure_message_.empty()) {
        shared->completion.fail(Failure{failure_message_, make(std::string("error object"))});
      } else {
        shared->completion.succeed(body_(shared->inputs));
      }
    });
  }

  // Whether the run had already ended when the sleep finished.
  bool saw_run_ended() const { return saw_run_ended_.load(); }

 private:
  milliseconds delay_;
  Body body_;
  std::string failure_message_;
  std::atomic<bool> saw_run_ended_{false};
};

// Whatever the test needs to do with the raw invocation.
class LambdaAgent : public TestAgent {
 public:
  explicit LambdaAgent(std::function<void(Invocation)> fn) : fn_(std::move(fn)) {}
  void invoke(Invocation invocation) override {
    record(invocation);
    fn_(std::move(invocation));
  }

 private:
  std::function<void(Invocation)> fn_;
};

inline std::shared_ptr<InlineAgent> inline_agent(Body body) {
  return std::make_shared<InlineAgent>(std::move(body));
}
inline std::shared_ptr<PooledAgent> pooled_agent(milliseconds delay, Body body) {
  return std::make_shared<PooledAgent>(delay, std::move(body));
}
inline std::shared_ptr<PooledAgent> failing_agent(milliseconds delay, std::string message) {
  return std::make_shared<PooledAgent>(delay, Body{}, std::move(message));
}
inline std::shared_ptr<LambdaAgent> lambda_agent(std::function<void(Invocation)> fn) {
  return std::make_shared<LambdaAgent>(std::move(fn));
}

// Appends ":<tag>" to its single string input.
inline Body append(std::string tag) {
  return [tag](const Inputs& in) { return make(as_str(in.items.at(0).value) + ":" + tag); };
}

class CountingObserver : public RunObserver {
 public:
  void on_run_finished(const RunHandle& run) override {
    last_run_.store(run.id());
    last_status_.store(run.status());
    calls_.fetch_add(1);
  }
  int calls() const { return calls_.load(); }
  RunStatus last_status() const { return last_status_.load(); }
  std::uint64_t last_run() const { return last_run_.load(); }

 private:
  std::atomic<int> calls_{0};
  std::atomic<RunStatus> last_status_{RunStatus::Running};
  std::atomic<std::uint64_t> last_run_{0};
};

}  // namespace cptest
