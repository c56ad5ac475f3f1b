#include "counterpoint/thread_pool.hpp"

#include <cxxabi.h>
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <string>
#include <system_error>

#include "counterpoint/errors.hpp"
#include "detail/threads.hpp"

namespace counterpoint {

namespace {
// The pool whose task this thread runs: a wait on it must compensate that pool.
thread_local ElasticThreadPool* t_pool = nullptr;
// Nested BlockedScopes on one thread (an embedder's wait loop around RunHandle waits)
// count the thread once.
thread_local int t_blocked_depth = 0;

constexpr std::size_t kMiB = std::size_t{1} << 20U;

std::size_t compute_stack_size() noexcept {
  // Unlimited on the main thread means "as deep as memory allows": give engine threads a
  // generous fixed size, as each one reserves its stack up front.
  constexpr std::size_t kWhenUnlimited = 64 * kMiB;
  constexpr std::size_t kMinimum = 2 * kMiB;
  constexpr std::size_t kMaximum = 1024 * kMiB;
  rlimit limit{};
  std::size_t size = kWhenUnlimited;
  if (::getrlimit(RLIMIT_STACK, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    size = static_cast<std::size_t>(limit.rlim_cur);
  }
  return std::clamp(size, kMinimum, kMaximum);
}

void* thread_entry(void* arg) {
  std::unique_ptr<std::function<void()>> body(static_cast<std::function<void()>*>(arg));
  (*body)();
  return nullptr;
}
}  // namespace

std::size_t thread_stack_size() noexcept {
  static const std::size_t size = compute_stack_size();
  return size;
}

void detail::start_detached_thread(std::function<void()> body, std::size_t stack_size) {
  pthread_attr_t attr;
  if (int error = ::pthread_attr_init(&attr); error != 0) {
    throw std::system_error(error, std::generic_category(), "pthread_attr_init");
  }
  ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // A size the system rejects (not a multiple of the page size on some systems) falls
  // back to the default rather than failing the thread.
  ::pthread_attr_setstacksize(&attr, stack_size != 0 ? stack_size : thread_stack_size());
  auto owned = std::make_unique<std::function<void()>>(std::move(body));
  pthread_t thread;
  const int error = ::pthread_create(&thread, &attr, &thread_entry, owned.get());
  ::pthread_attr_destroy(&attr);
  if (error != 0) throw std::system_error(error, std::generic_category(), "pthread_create");
  (void)owned.release();  // the thread owns it now
}

ElasticThreadPool::ElasticThreadPool(Options options) : options_(options) {
  if (options_.max_threads == 0) options_.max_threads = 1;
  if (options_.stack_size == 0) options_.stack_size = thread_stack_size();
}

ElasticThreadPool::~ElasticThreadPool() {
  stop();
  std::unique_lock<std::mutex> lock(mutex_);
  all_exited_.wait(lock, [&] { return threads_ == 0 && exiting_ == 0; });
}

ElasticThreadPool* ElasticThreadPool::current() noexcept { return t_pool; }

void ElasticThreadPool::grow_locked(std::unique_lock<std::mutex>& lock) {
  // Every queued task needs a thread of its own: an idle one, or a new one while fewer
  // than max_threads run tasks. Otherwise a blocking agent would hold back its siblings.
  if (tasks_.size() <= idle_ || running_locked() >= options_.max_threads) return;
  ++threads_;
  lock.unlock();
  try {
    detail::start_detached_thread([this] { worker_loop(); }, options_.stack_size);
  } catch (...) {
    lock.lock();
    --threads_;
    throw;
  }
  lock.lock();
}

void ElasticThreadPool::submit(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) throw EngineError("the thread pool is stopped; no new agent work is accepted");
  tasks_.push_back(std::move(task));
  try {
    grow_locked(lock);
  } catch (...) {
    if (threads_ == 0) {
      // No thread will ever pick the task up: give it back to the caller.
      tasks_.pop_back();
      throw;
    }
  }
  lock.unlock();
  work_ready_.notify_one();
}

void ElasticThreadPool::worker_loop() {
  t_pool = this;
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    // Threads that stood in for blocked ones retire once those return to work, so the
    // pool settles back to max_threads running. A retiring thread may have been woken for
    // a queued task: it passes the wake-up on, and stops counting at once, so the next
    // thread woken takes the task instead of retiring too.
    if (running_locked() > options_.max_threads) {
      if (!tasks_.empty()) work_ready_.notify_one();
      break;
    }
    if (!tasks_.empty()) {
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      try {
        task();
      } catch (abi::__forced_unwind&) {
        throw;  // the interpreter is ending this thread; let it unwind
      } catch (...) {
        // A task owns its error reporting (an unresolved Completion fails its agent when
        // destroyed), so a throw here has already been accounted for.
      }
      task = nullptr;
      lock.lock();
      continue;
    }
    if (stopping_) break;
    ++idle_;
    const bool woke = work_ready_.wait_for(lock, options_.idle_timeout,
                                           [&] { return !tasks_.empty() || stopping_; });
    --idle_;
    if (!woke) break;
  }
  // No longer a thread that can take work; still one that join() and the destructor
  // wait for until its exit hook has run.
  --threads_;
  ++exiting_;
  std::function<void()> hook = exit_hook_;
  lock.unlock();
  if (hook) hook();
  lock.lock();
  --exiting_;
  if (threads_ == 0 && exiting_ == 0) all_exited_.notify_all();
}

void ElasticThreadPool::enter_blocked() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (blocked_ >= options_.max_blocked) {
    throw EngineError(
        "an agent on a pool thread waited for another run while " + std::to_string(blocked_) +
        " pool threads were already blocked in such nested waits (the limit, "
        "Runtime::Options::max_blocked_pool_threads); waiting any deeper could exhaust the "
        "process, so this wait fails and the run it waited for is cancelled. Nest graphs "
        "instead of calling invoke() inside an agent (add the inner graph itself as an "
        "agent), make the agent async, or raise the limit");
  }
  ++blocked_;
  try {
    grow_locked(lock);
  } catch (const std::exception& error) {
    --blocked_;
    throw EngineError(std::string("an agent on a pool thread waited for another run, but no "
                                  "thread could be started to run the work it waits for (") +
                      error.what() + "); nest graphs instead of calling invoke() inside an agent");
  }
}

void ElasticThreadPool::leave_blocked() {
  std::lock_guard<std::mutex> lock(mutex_);
  --blocked_;
}

ElasticThreadPool::BlockedScope::BlockedScope() : pool_(t_blocked_depth == 0 ? t_pool : nullptr) {
  if (pool_ != nullptr) pool_->enter_blocked();  // may throw: then no scope exists
  ++t_blocked_depth;
}

ElasticThreadPool::BlockedScope::~BlockedScope() {
  --t_blocked_depth;
  if (pool_ != nullptr) pool_->leave_blocked();
}

void ElasticThreadPool::set_thread_exit_hook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mutex_);
  exit_hook_ = std::move(hook);
}

void ElasticThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
}

bool ElasticThreadPool::join(std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mutex_);
  return all_exited_.wait_for(lock, timeout, [&] { return threads_ == 0 && exiting_ == 0; });
}

std::size_t ElasticThreadPool::threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return threads_ + exiting_;
}

std::size_t ElasticThreadPool::idle_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return idle_;
}

std::size_t ElasticThreadPool::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return tasks_.size();
}

std::size_t ElasticThreadPool::blocked_threads() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return blocked_;
}

}  // namespace counterpoint
