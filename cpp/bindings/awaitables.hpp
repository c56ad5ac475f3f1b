#pragma once
// What the native awaitables (InContext, AsyncChunks) share.
#include <Python.h>

namespace counterpoint::bindings {

// Requires the GIL. Ends an awaitable stepped with next() or send() the iterator
// protocol's way: raises StopIteration carrying `value` (a reference this takes over),
// wrapped, so that a tuple or an exception stays one value. Returns null.
inline PyObject* raise_stop_iteration(PyObject* value) {
  if (value == Py_None) {
    Py_DECREF(value);
    PyErr_SetNone(PyExc_StopIteration);
    return nullptr;
  }
  PyObject* stop = PyObject_CallOneArg(PyExc_StopIteration, value);
  Py_DECREF(value);
  if (stop != nullptr) {
    PyErr_SetObject(PyExc_StopIteration, stop);
    Py_DECREF(stop);
  }
  return nullptr;
}

}  // namespace counterpoint::bindings
