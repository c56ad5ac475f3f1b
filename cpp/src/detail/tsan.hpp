#pragma once
// ThreadSanitizer annotations for the hand-offs oneTBB performs for us.
//
// oneTBB's scheduler is a prebuilt library without TSan instrumentation, so TSan cannot
// see that try_put() happens before the node body that receives the message, that an
// arena.execute() delegate's effects are visible when execute() returns, or that
// wait_for_all() returns after every body of the graph. Without these annotations every
// read of data handed over that way (the run message, the plan, the node bodies) is
// reported as a race, which would drown any real race in the engine. The annotations
// restate exactly those oneTBB guarantees and nothing more: a release where work is
// handed to oneTBB, an acquire where oneTBB hands it to us.
//
// A single key is used because the acquiring side (the first statement of a node body)
// must not read memory before acquiring: the message itself lives in a oneTBB task
// written by another thread.
//
// Outside TSan builds these are empty inline functions.
#if defined(__SANITIZE_THREAD__)
#define COUNTERPOINT_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COUNTERPOINT_TSAN 1
#endif
#endif

#include <utility>

#ifdef COUNTERPOINT_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace counterpoint::detail::tsan {

#ifdef COUNTERPOINT_TSAN
inline char handoff_key;
inline void handoff_release() noexcept { __tsan_release(&handoff_key); }
inline void handoff_acquire() noexcept { __tsan_acquire(&handoff_key); }
#else
inline void handoff_release() noexcept {}
inline void handoff_acquire() noexcept {}
#endif

// A callable handed to oneTBB to run elsewhere (arena.enqueue): oneTBB copies it into its
// task, and the copy is the last write before the hand-off, so the copy announces it;
// the call acquires before touching anything.
template <class F>
class Handoff {
 public:
  explicit Handoff(F f) : f_(std::move(f)) { handoff_release(); }
  Handoff(const Handoff& other) : f_(other.f_) { handoff_release(); }
  Handoff(Handoff&& other) noexcept : f_(std::move(other.f_)) { handoff_release(); }
  Handoff& operator=(const Handoff&) = delete;
  Handoff& operator=(Handoff&&) = delete;
  void operator()() const {
    handoff_acquire();
    f_();
  }

 private:
  F f_;
};

}  // namespace counterpoint::detail::tsan
