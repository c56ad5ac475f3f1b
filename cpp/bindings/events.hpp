#pragma once
// A run's events as Python sees them (events.cpp): counterpoint.Event objects or
// {agent path: output} updates, made one at a time as a stream is iterated.
#include <cstdint>
#include <vector>

#include <pybind11/pybind11.h>

#include "counterpoint/event.hpp"
#include "counterpoint/run.hpp"

namespace counterpoint::bindings {

namespace py = pybind11;

// What a stream takes its events as.
enum class EventForm : std::uint8_t {
  Event,   // counterpoint.Event objects (the class set_event_type registered)
  Update,  // {agent path: output} for each finish; other kinds are left out
};

// Requires the GIL. An EventBatch: an iterator over `events` in `form`, each made when
// it is reached, and `more`, whether the run has events still to come (next_events).
py::object event_batch(std::vector<Event>&& events, EventForm form, bool more);

// An ended run's "end" event (its output, as output_or_report gives it) if it succeeded,
// else its RunReport.
py::object end_event_or_report(const RunHandle& run);

}  // namespace counterpoint::bindings
