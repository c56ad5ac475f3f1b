#pragma once
// Helpers shared by the per-feature engine tests (limiter, breaker, timers, policies,
// budgets, deadlines, restore, node hooks).
//
// Timing rule for these tests: the machine is a noisy 2-core box that also runs
// sanitizer builds, so tests assert orderings and counts, and only lower bounds on time
// (a rate limit or a backoff can never be faster than configured). Upper bounds, where
// one is needed at all, are seconds for work that takes milliseconds.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <fstream>
#include <initializer_list>
#include <functional>
#include <memory>
#include <mutex>
#include <ostream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "counterpoint/counterpoint.hpp"
#include "counterpoint/policy_agent.hpp"
#include "test_agents.hpp"
#include "test_harness.hpp"

namespace counterpoint {
inline std::ostream& operator<<(std::ostream& out, FailureKind k) {
  switch (k) {
    case FailureKind::Error: return out << "Error";
    case FailureKind::Timeout: return out << "Timeout";
    case FailureKind::CircuitOpen: return out << "CircuitOpen";
    case FailureKind::Rejected: return out << "Rejected";
    case FailureKind::Budget: return out << "Budget";
  }
  return out << "?";
}
}  // namespace counterpoint

namespace cptest {

// A healthy run takes milliseconds; this only bounds a broken one.
constexpr auto kLongWait = std::chrono::seconds(30);

inline RunHandle start_with(const std::shared_ptr<CompiledGraph>& graph, RunOptions options) {
  return graph->start(std::move(options));
}

inline RunHandle start_input(const std::shared_ptr<CompiledGraph>& graph, Payload input = {}) {
  RunOptions options;
  options.input = std::move(input);
  return graph->start(std::move(options));
}

inline void wait_end(const RunHandle& run) { REQUIRE(run.wait_for(kLongWait)); }

inline RunHandle finish(const std::shared_ptr<CompiledGraph>& graph, RunOptions options) {
  RunHandle run = graph->start(std::move(options));
  wait_end(run);
  return run;
}

inline RunHandle finish_input(const std::shared_ptr<CompiledGraph>& graph, Payload input = {}) {
  RunOptions options;
  options.input = std::move(input);
  return finish(graph, std::move(options));
}

// A chain of agents, each after the one before it, named as given.
inline std::shared_ptr<CompiledGraph> chain_of(
    std::initializer_list<std::pair<std::string, std::shared_ptr<Agent>>> agents) {
  GraphSpec spec;
  const std::string* previous = nullptr;
  for (const auto& [name, agent] : agents) {
    if (previous == nullptr) {
      spec.add(name, agent);
    } else {
      spec.add(name, agent, {*previous});
    }
    previous = &name;
  }
  return CompiledGraph::compile(spec);
}

inline std::uint32_t node_index(const std::shared_ptr<CompiledGraph>& graph,
                                const std::string& name) {
  const auto index = graph->plan().find(name);
  REQUIRE(index >= 0);
  return static_cast<std::uint32_t>(index);
}

inline NodeOutcome outcome_of(const RunHandle& run, const std::shared_ptr<CompiledGraph>& graph,
                              const std::string& name) {
  auto outcome = run.outcome(node_index(graph, name));
  REQUIRE(outcome.has_value());
  return *outcome;
}

inline NodeStatus status_of(const RunHandle& run, const std::shared_ptr<CompiledGraph>& graph,
                            const std::string& name) {
  return outcome_of(run, graph, name).status;
}

// Collects every event of a recording run, in order, until the run has ended and the
// queue is drained.
inline std::vector<Event> drain_events(RunHandle& run) {
  std::vector<Event> events;
  for (int rounds = 0; rounds < 10000; ++rounds) {
    if (!run.next_events(events, std::chrono::milliseconds(100))) return events;
  }
  report_failure(__FILE__, __LINE__, "next_events never reported the end of the run");
  return events;
}

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline double usage_of(const Usage& usage, const std::string& name) {
  double total = 0.0;
  for (const auto& [key, amount] : usage) {
    if (key == name) total += amount;
  }
  return total;
}

inline std::shared_ptr<Agent> with_policy(std::shared_ptr<Agent> inner, AgentPolicy policy) {
  return std::make_shared<PolicyAgent>(std::move(inner), std::move(policy));
}

// A one-way gate: threads wait until the test opens it.
class Gate {
 public:
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    changed_.notify_all();
  }
  bool is_open() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_;
  }
  // True if opened within `timeout`.
  bool wait(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000)) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return open_; });
  }

 private:
  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  bool open_ = false;
};

// Records the order in which callbacks (limiter grants, timers) run, and on which thread.
struct CallLog {
  std::mutex mutex;
  std::vector<int> order;
  std::vector<std::thread::id> threads;

  std::function<void()> entry(int id) {
    return [this, id] {
      std::lock_guard<std::mutex> lock(mutex);
      order.push_back(id);
      threads.push_back(std::this_thread::get_id());
    };
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return order.size();
  }
  std::vector<int> snapshot() {
    std::lock_guard<std::mutex> lock(mutex);
    return order;
  }
};

// Values handed from whichever thread produces them to the test thread, which takes
// them in order; take() REQUIREs that one arrives in time, so a test cannot hang.
template <class T>
class HandOff {
 public:
  void put(T value) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items_.push_back(std::move(value));
    }
    changed_.notify_all();
  }
  T take(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000)) {
    std::unique_lock<std::mutex> lock(mutex_);
    REQUIRE(changed_.wait_for(lock, timeout, [&] { return !items_.empty(); }));
    T value = std::move(items_.front());
    items_.pop_front();
    return value;
  }
  std::size_t size() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return items_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<T> items_;
};

// Keeps every invocation it receives, unresolved, for the test to resolve when (and from
// whichever thread) it likes. What is still held when the agent dies is dropped, which
// fails those nodes, so a test that forgets one cannot hang.
class HeldAgent : public TestAgent {
 public:
  void invoke(Invocation invocation) override {
    record(invocation);
    held_.put(std::move(invocation));
  }
  // Waits for the next invocation and takes it; REQUIREs that one arrives.
  Invocation take(std::chrono::milliseconds timeout = std::chrono::milliseconds(30000)) {
    return held_.take(timeout);
  }
  std::size_t held() const { return held_.size(); }

 private:
  HandOff<Invocation> held_;
};

// Resolves with `outcome_for(inputs)` on a pool thread after `delay`.
class OutcomeAgent : public TestAgent {
 public:
  using Make = std::function<Outcome(const Inputs&)>;
  OutcomeAgent(std::chrono::milliseconds delay, Make make) : delay_(delay), make_(std::move(make)) {}
  void invoke(Invocation invocation) override {
    record(invocation);
    auto shared = std::make_shared<Invocation>(std::move(invocation));
    Runtime::instance().pool().submit([this, shared] {
      if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
      shared->completion.resolve(make_(shared->inputs));
    });
  }

 private:
  std::chrono::milliseconds delay_;
  Make make_;
};

// Succeeds with `output`, reporting `usage`.
inline Outcome success_using(Payload output, Usage usage) {
  Outcome outcome = Outcome::success(std::move(output));
  outcome.usage = std::move(usage);
  return outcome;
}

// Threads of this process, from /proc (Linux): to show that waiting holds no thread.
inline int process_threads() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

inline double seconds_since(std::chrono::steady_clock::time_point from) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count();
}

}  // namespace cptest
