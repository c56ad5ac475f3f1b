#pragma once
// Every GIL rule of the project lives in the bindings, most of it here.
//
// Native threads (oneTBB workers, pool threads) call Python through ScopedGil, which
// keeps one interpreter thread state per native thread for the thread's lifetime:
// creating a fresh one per call (what PyGILState_Ensure does on a thread without one)
// costs more than a small agent. Python objects are only ever released with the GIL:
// a reference dropped on a thread that does not hold it is queued and released by the
// next thread that does.
#include <Python.h>

namespace counterpoint::bindings {

// False once the interpreter is finalizing (or our atexit hook ran): from then on no
// native thread may try to take the GIL.
bool python_alive() noexcept;
void mark_shutting_down() noexcept;

class ScopedGil {
 public:
  ScopedGil();
  ~ScopedGil();
  ScopedGil(const ScopedGil&) = delete;
  ScopedGil& operator=(const ScopedGil&) = delete;

 private:
  bool already_held_;
};

// Drops this thread's interpreter state (pool threads call it as they exit).
void forget_thread_state() noexcept;

// Calls `callable(argument)` (both borrowed) with the GIL held; returns a new reference or
// null with a Python error set. If the interpreter finalizes meanwhile, CPython ends the
// calling thread by unwinding it; that unwind must not run C++ destructors that touch
// Python, nor reach oneTBB (which would abort), so the thread parks until the process
// exits instead, as later CPython versions do themselves.
PyObject* call_python(PyObject* callable, PyObject* argument);

// Py_DECREF now if this thread holds the GIL, otherwise queue it.
void release_object(PyObject* object) noexcept;
// Releases the queued references. Requires the GIL; cheap when nothing is queued.
void drain_released_objects() noexcept;

}  // namespace counterpoint::bindings
