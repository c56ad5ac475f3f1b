#include "counterpoint/runtime.hpp"

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <oneapi/tbb/version.h>

#include "detail/run_state.hpp"
#include "detail/runtime_impl.hpp"
#include "detail/threads.hpp"
#include "counterpoint/errors.hpp"

namespace counterpoint {

namespace {
int hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 2 : static_cast<int>(n);
}

// One oneTBB worker per core but one, unless COUNTERPOINT_WORKERS says otherwise. The
// core left over is for the threads that hold the GIL for real work (the caller, pool
// threads, the event loop): inline agents are serialized by the GIL anyway, and a second
// worker running them only adds GIL hand-offs. Measured on 2 cores: 3-agent chain
// overhead 6.5 us with one worker against 9.3 us with two, 5-way fan-out 11 us against 14.
int default_workers() {
  // Read once, when the runtime starts and before it starts any thread.
  if (const char* configured = std::getenv("COUNTERPOINT_WORKERS")) {  // NOLINT(concurrency-mt-unsafe)
    char* end = nullptr;
    const long workers = std::strtol(configured, &end, 10);
    if (end != configured && *end == '\0' && workers >= 1 && workers <= 4096) {
      return static_cast<int>(workers);
    }
  }
  return std::max(1, hardware_threads() - 1);
}

Runtime::Options resolve(Runtime::Options options) {
  if (options.workers <= 0) options.workers = default_workers();
  if (options.stack_size == 0) options.stack_size = thread_stack_size();
  if (options.max_pool_threads == 0) options.max_pool_threads = 1;
  return options;
}

std::mutex& configure_mutex() {
  static std::mutex mutex;
  return mutex;
}
Runtime::Options& configured_options() {
  static Runtime::Options options;
  return options;
}
std::atomic<bool> g_started{false};
}  // namespace

Runtime::Impl::Impl(const Runtime::Options& options)
    // The caller waits outside the arena, so no slot is reserved for it and the global
    // cap is raised to let every slot have a worker.
    : parallelism_(tbb::global_control::max_allowed_parallelism,
                   static_cast<std::size_t>(options.workers) + 1),
      stack_size_(tbb::global_control::thread_stack_size, options.stack_size),
      arena_(options.workers, /*reserved_for_masters=*/0) {
  arena_.initialize();
}

void Runtime::Impl::reap(std::function<void()> work) {
  {
    std::lock_guard<std::mutex> lock(reap_mutex_);
    reap_queue_.push_back(std::move(work));
    if (!reaper_started_) {
      reaper_started_ = true;
      // Detached and never joined: the runtime itself lives until the process ends. Its
      // stack is an engine thread's: destructors it runs may be the embedder's.
      detail::start_detached_thread([this] { reaper_loop(); });
    }
  }
  reap_ready_.notify_one();
}

void Runtime::Impl::reaper_loop() {
  std::unique_lock<std::mutex> lock(reap_mutex_);
  for (;;) {
    reap_ready_.wait(lock, [&] { return !reap_queue_.empty(); });
    std::function<void()> work = std::move(reap_queue_.front());
    reap_queue_.pop_front();
    lock.unlock();
    try {
      work();
    } catch (...) {
      // A destructor that throws has nobody to report to.
    }
    work = nullptr;
    lock.lock();
  }
}

void Runtime::Impl::register_run(const std::shared_ptr<detail::RunState>& run) {
  std::lock_guard<std::mutex> lock(mutex_);
  runs_.emplace(run->id, run);
}

void Runtime::Impl::unregister_run(std::uint64_t run_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  runs_.erase(run_id);
}

std::vector<std::shared_ptr<detail::RunState>> Runtime::Impl::live_runs() const {
  std::vector<std::shared_ptr<detail::RunState>> runs;
  std::lock_guard<std::mutex> lock(mutex_);
  runs.reserve(runs_.size());
  for (const auto& entry : runs_) {
    if (auto run = entry.second.lock()) runs.push_back(std::move(run));
  }
  return runs;
}

std::size_t Runtime::Impl::live_count() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return runs_.size();
}

namespace {
ElasticThreadPool::Options pool_options(const Runtime::Options& options) {
  ElasticThreadPool::Options pool;
  pool.max_threads = options.max_pool_threads;
  pool.max_blocked = options.max_blocked_pool_threads;
  pool.idle_timeout = options.pool_idle_timeout;
  pool.stack_size = options.stack_size;
  return pool;
}
}  // namespace

Runtime::Runtime(const Options& options)
    : options_(resolve(options)),
      impl_(std::make_unique<Impl>(options_)),
      pool_(std::make_unique<ElasticThreadPool>(pool_options(options_))) {}

void Runtime::configure(const Options& options) {
  std::lock_guard<std::mutex> lock(configure_mutex());
  if (g_started.load(std::memory_order_acquire)) {
    throw EngineError(
        "the counterpoint runtime has already started (a graph was compiled or run), so its "
        "options can no longer change; configure it before first use, e.g. at program start");
  }
  configured_options() = options;
}

bool Runtime::started() noexcept { return g_started.load(std::memory_order_acquire); }

Runtime& Runtime::instance() {
  // Deliberately leaked: detached pool threads and late completions may still reach it
  // while static destructors run at process exit.
  static Runtime* runtime = [] {
    std::lock_guard<std::mutex> lock(configure_mutex());
    g_started.store(true, std::memory_order_release);
    return new Runtime(configured_options());
  }();
  return *runtime;
}

void Runtime::interrupt_all() {
  accepting_.store(false, std::memory_order_release);
  for (const auto& run : impl_->live_runs()) run->end(RunStatus::Interrupted);
}

bool Runtime::shutdown(std::chrono::milliseconds drain_timeout) {
  interrupt_all();
  pool_->stop();
  const auto deadline = std::chrono::steady_clock::now() + drain_timeout;
  while (inflight_invocations() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return inflight_invocations() == 0;
}

std::size_t Runtime::live_runs() const { return impl_->live_count(); }

namespace {
// Set while this thread runs engine work; asking oneTBB instead (current_context) would
// give every caller thread oneTBB thread state, which slows the hand-off of every run.
thread_local int t_engine_work = 0;
}  // namespace

bool Runtime::on_engine_thread() noexcept { return t_engine_work > 0; }

Runtime::EngineWork::EngineWork() noexcept { ++t_engine_work; }
Runtime::EngineWork::~EngineWork() { --t_engine_work; }

const char* Runtime::tbb_runtime_version() noexcept { return TBB_runtime_version(); }
int Runtime::tbb_runtime_interface_version() noexcept { return TBB_runtime_interface_version(); }
int Runtime::tbb_compiled_interface_version() noexcept { return TBB_INTERFACE_VERSION; }

}  // namespace counterpoint
