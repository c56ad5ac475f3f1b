// counterpoint._core.InContext(context, awaitable): awaits `awaitable` with each of its
// steps run in the contextvars `context`. An agent task that goes on to the next call of
// its run (counterpoint/_loops.py) steps that call in the call's own context this way. As
// a Python generator it cost two frames and a Context.run per step, a large part of what
// a chain of coroutine agents spent per agent; as a type with am_send a step is a
// context switch around the awaitable's own send.
#include "in_context.hpp"

#include "awaitables.hpp"
#include "register.hpp"

namespace counterpoint::bindings {

namespace {

struct InContextObject {
  PyObject_HEAD
  PyObject* context;  // a contextvars.Context
  PyObject* steps;    // the awaitable's iterator: a coroutine itself, or its __await__()
};

InContextObject* as_in_context(PyObject* self) { return reinterpret_cast<InContextObject*>(self); }

// Calls `step(steps)` inside the object's context. An error the step raised outlives the
// context's exit; leaving a context that was entered cannot fail unless the step left a
// context of its own entered, which is reported instead.
template <typename Step>
auto in_context(PyObject* self, Step&& step) -> decltype(step(nullptr)) {
  InContextObject* object = as_in_context(self);
  if (PyContext_Enter(object->context) != 0) return {};
  auto result = step(object->steps);
  PyObject *type = nullptr, *value = nullptr, *traceback = nullptr;
  PyErr_Fetch(&type, &value, &traceback);
  if (PyContext_Exit(object->context) != 0) {
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    return {};
  }
  PyErr_Restore(type, value, traceback);
  return result;
}

PySendResult in_context_send(PyObject* self, PyObject* arg, PyObject** result) {
  PyObject* made = nullptr;
  PySendResult status = PYGEN_ERROR;
  const bool entered = in_context(self, [&](PyObject* steps) -> bool {
    status = PyIter_Send(steps, arg, &made);
    return true;
  });
  if (!entered) {
    Py_XDECREF(made);
    *result = nullptr;
    return PYGEN_ERROR;
  }
  *result = made;
  return status;
}

// The iterator protocol, for callers that step it with next() or send(): a return is a
// StopIteration carrying the value.
PyObject* finished(PySendResult status, PyObject* made) {
  return status == PYGEN_RETURN ? raise_stop_iteration(made) : made;
}

PyObject* in_context_next(PyObject* self) {
  PyObject* made = nullptr;
  const PySendResult status = in_context_send(self, Py_None, &made);
  return finished(status, made);
}

PyObject* in_context_send_method(PyObject* self, PyObject* value) {
  PyObject* made = nullptr;
  const PySendResult status = in_context_send(self, value, &made);
  return finished(status, made);
}

// throw() and close() reach the awaitable the way a task or `yield from` reaches any
// iterator it delegates to: by its methods, inside the context.
PyObject* in_context_throw(PyObject* self, PyObject* args) {
  return in_context(self, [&](PyObject* steps) -> PyObject* {
    PyObject* method = PyObject_GetAttrString(steps, "throw");
    if (method == nullptr) return nullptr;
    PyObject* result = PyObject_Call(method, args, nullptr);
    Py_DECREF(method);
    return result;
  });
}

PyObject* in_context_close(PyObject* self, PyObject* /*unused*/) {
  return in_context(self, [&](PyObject* steps) -> PyObject* {
    PyObject* method = PyObject_GetAttrString(steps, "close");
    if (method == nullptr) {
      if (PyErr_ExceptionMatches(PyExc_AttributeError) == 0) return nullptr;
      PyErr_Clear();  // an iterator with nothing to close
      Py_RETURN_NONE;
    }
    PyObject* result = PyObject_CallNoArgs(method);
    Py_DECREF(method);
    return result;
  });
}

PyObject* in_context_await(PyObject* self) { return Py_NewRef(self); }

// Filled in by register_in_context (a static type, as CPython's own are).
PyTypeObject g_in_context_type = {PyVarObject_HEAD_INIT(nullptr, 0)};

PyObject* in_context_new(PyTypeObject* /*type*/, PyObject* args, PyObject* kwargs) {
  PyObject* context = nullptr;
  PyObject* awaitable = nullptr;
  if ((kwargs != nullptr && PyDict_GET_SIZE(kwargs) != 0) ||
      PyArg_ParseTuple(args, "O!O:InContext", &PyContext_Type, &context, &awaitable) == 0) {
    if (!PyErr_Occurred()) {
      PyErr_SetString(PyExc_TypeError, "InContext(context, awaitable) takes no keywords");
    }
    return nullptr;
  }
  return new_in_context(context, awaitable);
}

}  // namespace

PyObject* new_in_context(PyObject* context, PyObject* awaitable) {
  PyObject* steps = nullptr;
  if (PyCoro_CheckExact(awaitable)) {
    steps = Py_NewRef(awaitable);  // a coroutine steps itself, send included
  } else {
    PyAsyncMethods* async = Py_TYPE(awaitable)->tp_as_async;
    if (async == nullptr || async->am_await == nullptr) {
      PyErr_Format(PyExc_TypeError, "InContext needs an awaitable, got %.100s",
                   Py_TYPE(awaitable)->tp_name);
      return nullptr;
    }
    steps = async->am_await(awaitable);
    if (steps == nullptr) return nullptr;
  }
  auto* self = PyObject_GC_New(InContextObject, &g_in_context_type);
  if (self == nullptr) {
    Py_DECREF(steps);
    return nullptr;
  }
  self->context = Py_NewRef(context);
  self->steps = steps;
  PyObject_GC_Track(self);
  return reinterpret_cast<PyObject*>(self);
}

namespace {

int in_context_traverse(PyObject* self, visitproc visit, void* arg) {
  Py_VISIT(as_in_context(self)->context);
  Py_VISIT(as_in_context(self)->steps);
  return 0;
}

int in_context_clear(PyObject* self) {
  Py_CLEAR(as_in_context(self)->context);
  Py_CLEAR(as_in_context(self)->steps);
  return 0;
}

void in_context_dealloc(PyObject* self) {
  PyObject_GC_UnTrack(self);
  in_context_clear(self);
  PyObject_GC_Del(self);
}

// NOLINTBEGIN(cppcoreguidelines-avoid-c-arrays): the C API's tables
PyMethodDef in_context_methods[] = {
    {"send", in_context_send_method, METH_O, "Steps the awaitable with a value, in the context."},
    {"throw", in_context_throw, METH_VARARGS, "Raises into the awaitable, in the context."},
    {"close", in_context_close, METH_NOARGS, "Closes the awaitable, in the context."},
    {nullptr, nullptr, 0, nullptr}};
// NOLINTEND(cppcoreguidelines-avoid-c-arrays)

PyAsyncMethods in_context_async = {in_context_await, nullptr, nullptr, in_context_send};

}  // namespace

void register_in_context(py::module_& m) {
  g_in_context_type.tp_name = "counterpoint._core.InContext";
  g_in_context_type.tp_basicsize = sizeof(InContextObject);
  g_in_context_type.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC;
  g_in_context_type.tp_doc =
      "InContext(context, awaitable): awaits `awaitable` with each step run in `context`.";
  g_in_context_type.tp_new = in_context_new;
  g_in_context_type.tp_dealloc = in_context_dealloc;
  g_in_context_type.tp_traverse = in_context_traverse;
  g_in_context_type.tp_clear = in_context_clear;
  g_in_context_type.tp_as_async = &in_context_async;
  g_in_context_type.tp_iter = PyObject_SelfIter;
  g_in_context_type.tp_iternext = in_context_next;
  g_in_context_type.tp_methods = in_context_methods;
  add_static_type(m, g_in_context_type, "InContext");
}

}  // namespace counterpoint::bindings
