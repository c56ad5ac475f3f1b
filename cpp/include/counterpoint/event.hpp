#pragma once
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "counterpoint/payload.hpp"

namespace counterpoint {

// Custom and Message events are published by an agent while it runs (EventChannel):
// data it chose to report, and the chunks a language model it calls streams.
enum class EventKind : std::uint8_t {
  Start, Finish, Error, Cancel, Skip, Review, Custom, Message,
  // What an agent's policies do between its start and its end, for its run's timeline:
  // it waits for a slot of a limit (Queued, `message`: the limit), an attempt starts
  // (Attempt, `attempt`), an attempt failed and the next waits `delay` seconds (Retry,
  // `message` and `payload`: the failure), its fallback starts (Fallback, `message`:
  // the failure that led to it), its output waits for a reviewer (Reviewing, `message`:
  // why). A run records them only when asked (a timeline), never for a stream's modes.
  Queued, Attempt, Retry, Fallback, Reviewing,
  // The agent asked a person a question and stopped (`payload`: the question), as
  // Review says an agent's output awaits a decision.
  Input
};
constexpr std::size_t kEventKindCount = static_cast<std::size_t>(EventKind::Input) + 1;
static_assert(kEventKindCount <= 16, "EventKinds keeps one bit per kind in 16 bits");

const char* to_string(EventKind kind) noexcept;

// A set of event kinds: the ones a run records (RunOptions::record_events). A stream of
// agent outputs needs only finishes, a stream of agents' own data only what they publish:
// a run records nothing more, so what nobody reads costs nothing.
class EventKinds {
 public:
  constexpr EventKinds() noexcept = default;  // none
  constexpr EventKinds(std::initializer_list<EventKind> kinds) noexcept {
    for (EventKind kind : kinds) bits_ |= bit(kind);
  }
  static constexpr EventKinds all() noexcept {
    EventKinds every;
    every.bits_ = static_cast<std::uint16_t>((1U << kEventKindCount) - 1U);
    return every;
  }
  constexpr EventKinds with(EventKind kind) const noexcept {
    EventKinds more = *this;
    more.bits_ |= bit(kind);
    return more;
  }
  constexpr bool contains(EventKind kind) const noexcept { return (bits_ & bit(kind)) != 0; }
  constexpr bool none() const noexcept { return bits_ == 0; }
  constexpr bool operator==(const EventKinds& other) const noexcept { return bits_ == other.bits_; }

 private:
  static constexpr std::uint16_t bit(EventKind kind) noexcept {
    return static_cast<std::uint16_t>(1U << static_cast<unsigned>(kind));
  }
  std::uint16_t bits_ = 0;
};

// Something that happened to one agent of one run, in the order it happened.
struct Event {
  EventKind kind = EventKind::Start;
  std::uint64_t run_id = 0;
  std::uint32_t node = 0;
  // How many events the run had recorded when this agent started: none of those from
  // this position on can be the cause of this one, so results may be reordered among
  // them (by priority) and the stream stays causal.
  std::uint32_t after = 0;
  std::string agent;       // "<delegating agent>/<agent>" for agents of child runs
  double seconds = 0.0;    // since the run started
  int priority = 0;
  Payload payload;         // Finish: the output; Error: the error object; Custom, Message: the data
  // Error: the failure summary; Finish of a router: its routes; Skip: why; Review: why
  // the output awaits a decision; Message: who published it (the embedder's tag).
  std::string message;
  std::uint32_t attempt = 0;  // Attempt: its number, from 1; Retry: the failed one's
  double delay = 0.0;         // Retry: seconds of backoff before the next attempt
};

}  // namespace counterpoint
