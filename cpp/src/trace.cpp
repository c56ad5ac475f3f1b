// JSON views of plans and runs, and the names of enums.
#include <nlohmann/json.hpp>

#include "detail/run_state.hpp"
#include "counterpoint/event.hpp"
#include "counterpoint/plan.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint {

const char* to_string(EventKind kind) noexcept {
  switch (kind) {
    case EventKind::Start: return "start";
    case EventKind::Finish: return "finish";
    case EventKind::Error: return "error";
    case EventKind::Cancel: return "cancel";
    case EventKind::Skip: return "skip";
    case EventKind::Review: return "review";
    case EventKind::Input: return "input";
    case EventKind::Custom: return "custom";
    case EventKind::Message: return "message";
    case EventKind::Queued: return "queued";
    case EventKind::Attempt: return "attempt";
    case EventKind::Retry: return "retry";
    case EventKind::Fallback: return "fallback";
    case EventKind::Reviewing: return "reviewing";
  }
  return "unknown";
}

const char* to_string(RunStatus status) noexcept {
  switch (status) {
    case RunStatus::Running: return "running";
    case RunStatus::Succeeded: return "succeeded";
    case RunStatus::Failed: return "failed";
    case RunStatus::Cancelled: return "cancelled";
    case RunStatus::TimedOut: return "timed_out";
    case RunStatus::NeedsReview: return "needs_review";
    case RunStatus::NeedsInput: return "needs_input";
    case RunStatus::Interrupted: return "interrupted";
  }
  return "unknown";
}

const char* to_string(NodeStatus status) noexcept {
  switch (status) {
    case NodeStatus::Pending: return "not_started";
    case NodeStatus::Running: return "running";
    case NodeStatus::Succeeded: return "succeeded";
    case NodeStatus::Failed: return "failed";
    case NodeStatus::Cancelled: return "cancelled";
    case NodeStatus::Skipped: return "skipped";
    case NodeStatus::TimedOut: return "timed_out";
    case NodeStatus::NeedsReview: return "needs_review";
    case NodeStatus::NeedsInput: return "needs_input";
  }
  return "unknown";
}

std::string Plan::to_json() const {
  using nlohmann::json;
  json nodes = json::array();
  for (const PlanNode& node : nodes_) {
    json after = json::array();
    for (std::uint32_t pred : node.predecessors) after.push_back(nodes_[pred].name);
    static const char* const joins[] = {"all", "any", "available", "settled"};
    nodes.push_back({{"name", node.name},
                     {"after", after},
                     {"priority", node.priority},
                     {"join", joins[static_cast<int>(node.join)]},
                     {"on_error", node.on_error == ErrorMode::Continue ? "continue" : "fail"}});
  }
  json entries = json::array();
  for (std::uint32_t i : entries_) entries.push_back(nodes_[i].name);
  json sinks = json::array();
  for (std::uint32_t i : sinks_) sinks.push_back(nodes_[i].name);
  return json{{"nodes", nodes}, {"entries", entries}, {"sinks", sinks}}.dump();
}

std::string RunHandle::trace_json() const {
  using nlohmann::json;
  json agents = json::array();
  for (const NodeOutcome& outcome : outcomes()) {
    json entry{{"name", outcome.name}, {"status", to_string(outcome.status)}};
    if (outcome.started >= 0) entry["started"] = outcome.started;
    if (outcome.finished >= 0) entry["finished"] = outcome.finished;
    if (outcome.status == NodeStatus::Failed || outcome.status == NodeStatus::TimedOut) {
      entry["error"] = outcome.failure.message;
    }
    if (outcome.status == NodeStatus::Skipped) entry["reason"] = outcome.skip_reason;
    if (outcome.status == NodeStatus::NeedsReview || outcome.status == NodeStatus::NeedsInput) {
      entry["reason"] = outcome.failure.message;
      if (outcome.confidence >= 0) entry["confidence"] = outcome.confidence;
    }
    if (outcome.restored) entry["restored"] = true;
    if (!outcome.usage.empty()) {
      nlohmann::json usage = nlohmann::json::object();
      for (const auto& [name, amount] : outcome.usage) usage[name] = amount;
      entry["usage"] = usage;
    }
    if (!outcome.routes.empty()) entry["routes"] = outcome.routes;
    agents.push_back(std::move(entry));
  }
  json trace{{"run_id", id()}, {"status", to_string(status())}, {"elapsed", elapsed()},
             {"agents", agents}};
  if (auto failed = failed_node()) trace["failed"] = state_->plan.nodes()[*failed].name;
  if (budget_exhausted()) trace["budget_exhausted"] = true;
  nlohmann::json totals = nlohmann::json::object();
  for (const auto& [name, amount] : usage()) totals[name] = amount;
  if (!totals.empty()) trace["usage"] = totals;
  return trace.dump();
}

}  // namespace counterpoint
