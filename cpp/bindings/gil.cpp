#include "gil.hpp"

#include <cxxabi.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <mutex>
#include <vector>

namespace counterpoint::bindings {

namespace {

std::atomic<bool> g_shutting_down{false};

bool interpreter_finalizing() noexcept {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

struct ThreadState {
  PyThreadState* tstate = nullptr;
  PyGILState_STATE outer{};
};
thread_local ThreadState t_state;

std::mutex g_released_mutex;
std::vector<PyObject*> g_released;
std::atomic<bool> g_has_released{false};
// A drain is scheduled on the main thread (Py_AddPendingCall) whenever objects queue up:
// without it, what the last run released (a failed agent's exception, whose traceback
// holds the agent's locals) would stay alive until some later run drains the queue.
std::atomic<bool> g_drain_scheduled{false};

int drain_pending(void* /*unused*/) {
  g_drain_scheduled.store(false, std::memory_order_release);
  drain_released_objects();
  return 0;
}

}  // namespace

bool python_alive() noexcept {
  return !g_shutting_down.load(std::memory_order_acquire) && Py_IsInitialized() &&
         !interpreter_finalizing();
}

void mark_shutting_down() noexcept { g_shutting_down.store(true, std::memory_order_release); }

[[noreturn]] void park_thread_until_exit() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

ScopedGil::ScopedGil() : already_held_(PyGILState_Check() != 0) {
  if (already_held_) return;
  try {
    if (t_state.tstate == nullptr) {
      t_state.outer = PyGILState_Ensure();  // creates the thread's state and takes the GIL
      t_state.tstate = PyThreadState_Get();
    } else {
      PyEval_RestoreThread(t_state.tstate);
    }
  } catch (abi::__forced_unwind&) {
    park_thread_until_exit();  // the interpreter finalized while we waited for the GIL
  }
}

ScopedGil::~ScopedGil() {
  if (!already_held_) PyEval_SaveThread();
}

PyObject* call_python(PyObject* callable, PyObject* argument) {
  try {
    return PyObject_CallOneArg(callable, argument);
  } catch (abi::__forced_unwind&) {
    park_thread_until_exit();
  }
}

void forget_thread_state() noexcept {
  if (t_state.tstate == nullptr || !python_alive()) return;
  try {
    PyEval_RestoreThread(t_state.tstate);
  } catch (abi::__forced_unwind&) {
    park_thread_until_exit();  // the interpreter finalized while we waited for the GIL
  }
  drain_released_objects();
  t_state.tstate = nullptr;
  PyGILState_Release(t_state.outer);  // deletes the thread state and drops the GIL
}

void release_object(PyObject* object) noexcept {
  if (object == nullptr) return;
  if (PyGILState_Check()) {
    Py_DECREF(object);
    return;
  }
  if (!Py_IsInitialized() || interpreter_finalizing()) return;  // the heap goes with the process
  {
    std::lock_guard<std::mutex> lock(g_released_mutex);
    g_released.push_back(object);
    g_has_released.store(true, std::memory_order_release);
  }
  // Needs no GIL; the main thread runs it at its next bytecode boundary.
  if (!g_shutting_down.load(std::memory_order_acquire) &&
      !g_drain_scheduled.exchange(true, std::memory_order_acq_rel) &&
      Py_AddPendingCall(&drain_pending, nullptr) != 0) {
    g_drain_scheduled.store(false, std::memory_order_release);  // its queue is full: next time
  }
}

void drain_released_objects() noexcept {
  if (!g_has_released.load(std::memory_order_acquire)) return;
  std::vector<PyObject*> batch;
  {
    std::lock_guard<std::mutex> lock(g_released_mutex);
    batch.swap(g_released);
    g_has_released.store(false, std::memory_order_release);
  }
  for (PyObject* object : batch) Py_DECREF(object);
}

}  // namespace counterpoint::bindings
