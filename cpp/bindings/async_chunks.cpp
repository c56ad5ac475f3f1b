// counterpoint._core.AsyncChunks(refill, close): the async iterator `app.astream` returns.
// An async generator cost each chunk a resumption of its frame and a StopIteration made
// to carry the chunk out of __anext__, as much again as making the chunk; this hands out
// the chunks of the batch it holds straight from __anext__, with an awaitable that is
// done at its first step, and calls into Python only once a batch runs out:
// `refill(self)`, a coroutine, waits for the run's next events, gives them to take() and
// returns the first chunk, or raises StopAsyncIteration once there are none. `close()`
// ends the run early; it is called once, by aclose() or when the iterator is dropped
// before its end (a generator's finally clause did it before).
#include "awaitables.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

struct AsyncChunksObject {
  PyObject_HEAD
  PyObject* refill;   // refill(self) -> a coroutine returning the next chunk
  PyObject* close;    // close() -> None; null once called
  PyObject* batch;    // an iterator of chunks, or null
  PyObject* pending;  // the chunk __anext__'s awaitable (this object) returns, or null
};

AsyncChunksObject* as_chunks(PyObject* self) { return reinterpret_cast<AsyncChunksObject*>(self); }

// A new reference to the next chunk of the batch held, or null: none left (no error set;
// the batch is let go) or an error.
PyObject* next_of_batch(AsyncChunksObject* self) {
  if (self->batch == nullptr) return nullptr;
  PyObject* chunk = Py_TYPE(self->batch)->tp_iternext(self->batch);
  if (chunk == nullptr) {
    if (PyErr_Occurred() != nullptr) {
      if (PyErr_ExceptionMatches(PyExc_StopIteration) == 0) return nullptr;
      PyErr_Clear();
    }
    Py_CLEAR(self->batch);
  }
  return chunk;
}

PyObject* chunks_anext(PyObject* self) {
  AsyncChunksObject* chunks = as_chunks(self);
  if (chunks->pending != nullptr) {
    PyErr_SetString(PyExc_RuntimeError,
                    "anext(): the previous __anext__() of this stream was not awaited");
    return nullptr;
  }
  PyObject* chunk = next_of_batch(chunks);
  if (chunk != nullptr) {
    chunks->pending = chunk;  // awaiting this object returns it
    return Py_NewRef(self);
  }
  if (PyErr_Occurred() != nullptr) return nullptr;
  return PyObject_CallOneArg(chunks->refill, self);
}

// Awaiting the object __anext__ returned: done at once with the pending chunk.
PySendResult chunks_send(PyObject* self, PyObject* /*arg*/, PyObject** result) {
  AsyncChunksObject* chunks = as_chunks(self);
  if (chunks->pending == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "a stream's chunk was awaited twice");
    *result = nullptr;
    return PYGEN_ERROR;
  }
  *result = chunks->pending;  // the reference passes to the caller
  chunks->pending = nullptr;
  return PYGEN_RETURN;
}

// The iterator protocol, for callers that step an awaitable with next(): the chunk
// leaves in a StopIteration.
PyObject* chunks_next(PyObject* self) {
  PyObject* chunk = nullptr;
  if (chunks_send(self, Py_None, &chunk) == PYGEN_ERROR) return nullptr;
  return raise_stop_iteration(chunk);
}

PyObject* chunks_self(PyObject* self) { return Py_NewRef(self); }

// take(batch): the next events' chunks; returns the first, or this object if there is
// none (a chunk may be None: what an agent emitted).
PyObject* chunks_take(PyObject* self, PyObject* batch) {
  AsyncChunksObject* chunks = as_chunks(self);
  PyObject* iterator = PyObject_GetIter(batch);
  if (iterator == nullptr) return nullptr;
  Py_XSETREF(chunks->batch, iterator);
  PyObject* chunk = next_of_batch(chunks);
  if (chunk != nullptr || PyErr_Occurred() != nullptr) return chunk;
  return Py_NewRef(self);
}

// Calls close() once; a new reference to its result, or null with its error.
PyObject* close_once(AsyncChunksObject* chunks) {
  Py_CLEAR(chunks->batch);
  Py_CLEAR(chunks->pending);
  PyObject* close = chunks->close;
  if (close == nullptr) Py_RETURN_NONE;
  chunks->close = nullptr;
  PyObject* result = PyObject_CallNoArgs(close);
  Py_DECREF(close);
  return result;
}

// aclose(): ends the stream (the run, if still going, is cancelled); awaiting what it
// returns gives None, as an async generator's aclose() does.
PyObject* chunks_aclose(PyObject* self, PyObject* /*unused*/) {
  AsyncChunksObject* chunks = as_chunks(self);
  PyObject* closed = close_once(chunks);
  if (closed == nullptr) return nullptr;
  chunks->pending = closed;
  return Py_NewRef(self);
}

int chunks_traverse(PyObject* self, visitproc visit, void* arg) {
  AsyncChunksObject* chunks = as_chunks(self);
  Py_VISIT(chunks->refill);
  Py_VISIT(chunks->close);
  Py_VISIT(chunks->batch);
  Py_VISIT(chunks->pending);
  return 0;
}

int chunks_clear(PyObject* self) {
  AsyncChunksObject* chunks = as_chunks(self);
  Py_CLEAR(chunks->refill);
  Py_CLEAR(chunks->close);
  Py_CLEAR(chunks->batch);
  Py_CLEAR(chunks->pending);
  return 0;
}

void chunks_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  // Dropped before its end: the run it streams is cancelled, as closing does. An error
  // being raised meanwhile (the reason it was dropped, often) outlives the call.
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  PyObject* closed = close_once(as_chunks(self));
  if (closed == nullptr) {
    PyErr_WriteUnraisable(self);
  } else {
    Py_DECREF(closed);
  }
  PyErr_Restore(type, value, traceback);
  chunks_clear(self);
  PyObject_GC_Del(self);
}

// Filled in by register_async_chunks (a static type, as CPython's own are).
PyTypeObject g_async_chunks_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* chunks_new(PyTypeObject* /*type*/, PyObject* args, PyObject* kwargs) {
  PyObject* refill = nullptr;
  PyObject* close = nullptr;
  if ((kwargs != nullptr && PyDict_GET_SIZE(kwargs) != 0) ||
      PyArg_ParseTuple(args, "OO:AsyncChunks", &refill, &close) == 0) {
    if (!PyErr_Occurred()) {
      PyErr_SetString(PyExc_TypeError, "AsyncChunks(refill, close) takes no keywords");
    }
    return nullptr;
  }
  if (PyCallable_Check(refill) == 0 || PyCallable_Check(close) == 0) {
    PyErr_SetString(PyExc_TypeError, "AsyncChunks(refill, close): both must be callables");
    return nullptr;
  }
  auto* self = PyObject_GC_New(AsyncChunksObject, &g_async_chunks_type);
  if (self == nullptr) return nullptr;
  self->refill = Py_NewRef(refill);
  self->close = Py_NewRef(close);
  self->batch = nullptr;
  self->pending = nullptr;
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

// NOLINTBEGIN(cppcoreguidelines-avoid-c-arrays): the C API's tables
PyMethodDef chunks_methods[] = {
    {"take", chunks_take, METH_O,
     "take(batch): the chunks to hand out next; returns the first, or this object if none."},
    {"aclose", chunks_aclose, METH_NOARGS,
     "Ends the stream, cancelling its run if still going; await the result."},
    {nullptr, nullptr, 0, nullptr}};
// NOLINTEND(cppcoreguidelines-avoid-c-arrays)

PyAsyncMethods chunks_async = {chunks_self, chunks_self, chunks_anext, chunks_send};

}  // namespace

void register_async_chunks(py::module_& m) {
  g_async_chunks_type.tp_name = "counterpoint._core.AsyncChunks";
  g_async_chunks_type.tp_basicsize = sizeof(AsyncChunksObject);
  g_async_chunks_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  g_async_chunks_type.tp_doc =
      "AsyncChunks(refill, close): the async iterator of a stream's chunks (astream).";
  g_async_chunks_type.tp_new = chunks_new;
  g_async_chunks_type.tp_dealloc = chunks_dealloc;
  g_async_chunks_type.tp_traverse = chunks_traverse;
  g_async_chunks_type.tp_clear = chunks_clear;
  g_async_chunks_type.tp_as_async = &chunks_async;
  // An iterator only as the awaitable __anext__ returns: no tp_iter, so a plain `for`
  // over a stream is refused ("not iterable"), as over an async generator.
  g_async_chunks_type.tp_iternext = chunks_next;
  g_async_chunks_type.tp_methods = chunks_methods;
  add_static_type(m, g_async_chunks_type, "AsyncChunks");
}

}  // namespace counterpoint::bindings
