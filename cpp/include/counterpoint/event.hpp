#pragma once
#include <cstdint>
#include <string>
#include <string_view>

#include "counterpoint/payload.hpp"

namespace counterpoint {

// Custom and Message events are published by an agent while it runs (EventChannel):
// data it chose to report, and the chunks a language model it calls streams.
enum class EventKind : std::uint8_t { Start, Finish, Error, Cancel, Skip, Review, Custom, Message };

const char* to_string(EventKind kind) noexcept;

// Something that happened to one agent of one run, in the order it happened.
struct Event {
  EventKind kind = EventKind::Start;
  std::uint64_t run_id = 0;
  std::uint32_t node = 0;
  std::string agent;       // "<delegating agent>/<agent>" for agents of child runs
  double seconds = 0.0;    // since the run started
  int priority = 0;
  Payload payload;         // Finish: the output; Error: the error object; Custom, Message: the data
  // Error: the failure summary; Finish of a router: its routes; Skip: why; Review: why
  // the output awaits a decision; Message: who published it (the embedder's tag).
  std::string message;
};

}  // namespace counterpoint
