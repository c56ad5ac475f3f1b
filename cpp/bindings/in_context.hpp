#pragma once
// InContext: an awaitable stepped with each step in a given contextvars context (see
// in_context.cpp).
#include <pybind11/pybind11.h>

namespace counterpoint::bindings {

// With the GIL: a new InContext stepping `awaitable` in `context` (both borrowed; the
// context must be a contextvars.Context), or null with a TypeError set if `awaitable`
// is not awaitable.
PyObject* new_in_context(PyObject* context, PyObject* awaitable);

}  // namespace counterpoint::bindings
