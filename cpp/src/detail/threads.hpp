#pragma once
// Starting engine threads with a chosen stack size, which std::thread cannot do.
#include <cstddef>
#include <functional>

namespace counterpoint::detail {

// Starts a detached thread running `body` with a stack of `stack_size` bytes (0: the
// engine's default, thread_stack_size()). Throws std::system_error if the system refuses.
void start_detached_thread(std::function<void()> body, std::size_t stack_size = 0);

}  // namespace counterpoint::detail
