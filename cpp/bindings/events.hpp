#pragma once
// A run's events as Python sees them (events.cpp): counterpoint.Event objects or
// {agent path: output} updates, made one at a time as a stream is iterated.
#include <cstdint>
#include <memory>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/event.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// What a stream takes its events as.
enum class EventForm : std::uint8_t {
  Event,   // counterpoint.Event objects (event_type.hpp)
  Update,  // {agent path: output} for each finish; other kinds are left out
};

// The chunks of a run's events in one form, each made when it is reached and usually
// freed before the next is made: a batch of thousands never exists as objects all at
// once, so it neither grows a list nor makes the cycle collector run. Requires the GIL
// throughout (the events' payloads are Python objects).
class EventChunks {
 public:
  explicit EventChunks(EventForm form);
  ~EventChunks();
  EventChunks(const EventChunks&) = delete;
  EventChunks& operator=(const EventChunks&) = delete;

  EventForm form() const noexcept;
  // The next events to make chunks of; any not reached of the last ones are dropped.
  void refill(std::vector<Event>&& events);
  // A new reference to the next chunk; null once every event was made (no error set) or
  // with the Python error set.
  PyObject* next();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Requires the GIL. An EventBatch: an iterator over `events` in `form`, each made when
// it is reached, and `more`, whether the run has events still to come (next_events).
py::object event_batch(std::vector<Event>&& events, EventForm form, bool more);

// An ended run's "end" event (its output, as output_or_report gives it) if it succeeded,
// else its RunReport.
py::object end_event_or_report(const RunHandle& run);

}  // namespace counterpoint::bindings
