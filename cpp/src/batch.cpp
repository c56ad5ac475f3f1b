#include "counterpoint/batch.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "counterpoint/errors.hpp"
#include "counterpoint/runtime.hpp"
#include "counterpoint/thread_pool.hpp"
#include "detail/runtime_impl.hpp"
#include "detail/tsan.hpp"

namespace counterpoint {

// The shared state of a batch. Runs report to it through observers that are slots of a
// fixed array (one per place in the window, recycled), handed out as aliasing pointers
// that own the state: a batched run costs no allocation beyond the run itself.
//
// Only one thread refills at a time (`refilling_`); a run that finishes meanwhile just
// frees its place, which the refilling thread sees before it stops. That serializes the
// calls to make_options and keeps them in index order.
class Batch::State final : public std::enable_shared_from_this<State> {
 public:
  State(std::shared_ptr<CompiledGraph> graph, std::size_t count, BatchOptions options)
      : graph_(std::move(graph)),
        count_(count),
        window_(options.window != 0 ? options.window : BatchOptions::kDefaultWindow),
        make_options_(std::move(options.make_options)),
        on_ready_(std::move(options.on_ready)),
        slots_(std::min(window_, count_)) {
    free_slots_.reserve(slots_.size());
    for (std::size_t k = slots_.size(); k-- > 0;) {
      slots_[k].state = this;
      free_slots_.push_back(k);
    }
  }

  // Starts runs while the window has room; at most `max_starts` of them on this thread.
  void refill(std::size_t max_starts) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (refilling_) return;  // the refilling thread will see the room we made
    refilling_ = true;
    bool ready = false;
    std::size_t starts = 0;
    for (;;) {
      if (cancelled_ && next_index_ < count_) {
        // Inputs never started come back too, so the caller hears of every index.
        for (std::size_t index = next_index_; index < count_; ++index) {
          if (!abandoned_) finished_.push_back(Finished{index, RunHandle(), "cancelled"});
        }
        completed_ += count_ - next_index_;
        next_index_ = count_;
        ready = true;
      }
      if (next_index_ == count_ || in_flight_ >= slots_.size() || starts == max_starts) break;
      const std::size_t index = next_index_++;
      const std::size_t slot = free_slots_.back();
      free_slots_.pop_back();
      most_in_flight_ = std::max(most_in_flight_, ++in_flight_);
      ++starts;
      lock.unlock();
      start_one(slot, index);
      lock.lock();
    }
    refilling_ = false;
    // Stopped early with room left and nobody due to refill (every run may have
    // finished while this thread was starting them): a oneTBB task carries on, so the
    // constructor returns after one window.
    const bool more = next_index_ < count_ && in_flight_ < slots_.size() && !cancelled_;
    lock.unlock();
    if (ready) announce();
    if (more && starts == max_starts) {
      Runtime::instance().impl().arena().enqueue(
          detail::tsan::Handoff([self = shared_from_this()] {
            const Runtime::EngineWork engine_work;
            self->refill(kUnbounded);
          }));
    }
  }

  void cancel(bool interrupted = false) {
    std::vector<RunHandle> runs;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cancelled_) return;
      cancelled_ = true;
      for (Slot& slot : slots_) {
        if (slot.started) runs.push_back(slot.run);
      }
    }
    for (RunHandle& run : runs) {
      if (interrupted) {
        run.interrupt();
      } else {
        run.cancel();
      }
    }
    refill(kUnbounded);  // reports the inputs never started
  }

  // ~Batch: nobody will take what finishes from now on.
  void abandon() {
    std::vector<Finished> dropped;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      abandoned_ = true;
      dropped.swap(finished_);
    }
    cancel();
  }

  bool next(std::vector<Finished>& out, std::chrono::nanoseconds timeout,
            std::size_t at_least) {
    std::unique_lock<std::mutex> lock(mutex_);
    const std::size_t wanted = std::max<std::size_t>(1, std::min(at_least, count_ - taken_));
    if (finished_.size() < wanted && taken_ < count_ && timeout.count() > 0) {
      lock.unlock();
      std::optional<ElasticThreadPool::BlockedScope> blocked;
      if (Runtime::on_engine_thread()) {
        cancel();
        throw EngineError(
            "an agent running inline on an engine thread waited for a batch, which could "
            "stall the engine, so the batch was cancelled; run this agent on a thread "
            "(dispatch='thread') or make the batch part of the graph");
      }
      try {
        blocked.emplace();
      } catch (const EngineError&) {
        cancel();
        throw;
      }
      lock.lock();
      wanted_ = wanted;
      changed_.wait_for(lock, timeout, [&] { return finished_.size() >= wanted; });
      wanted_ = 1;
    }
    const bool took = !finished_.empty();
    taken_ += finished_.size();
    for (Finished& finished : finished_) out.push_back(std::move(finished));
    finished_.clear();
    return took || taken_ < count_;
  }

  std::size_t count() const noexcept { return count_; }
  std::size_t window() const noexcept { return window_; }
  std::size_t started() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return next_index_;
  }
  std::size_t in_flight() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return in_flight_;
  }
  std::size_t most_in_flight() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return most_in_flight_;
  }
  bool done() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return completed_ == count_;
  }

  static constexpr std::size_t kUnbounded = ~std::size_t{0};

 private:
  struct Slot final : RunObserver {
    State* state = nullptr;
    // Written by the thread that claims the slot, before the run starts.
    std::size_t index = 0;
    std::shared_ptr<RunObserver> inner;  // the run's own observer (a checkpoint writer)
    // Guarded by the state's mutex.
    RunHandle run;
    bool started = false;   // start() returned; `run` is set
    bool finished = false;  // the run ended before start() returned

    void on_run_finished(const RunHandle& run) override { state->run_finished(*this, run); }
    void on_event_recorded(std::uint64_t run_id) override {
      if (inner) inner->on_event_recorded(run_id);
    }
  };

  void start_one(std::size_t k, std::size_t index) {
    Slot& slot = slots_[k];
    std::string error;
    RunOptions options;
    try {
      options = make_options_(index);
    } catch (const std::exception& e) {
      error = e.what();
    } catch (...) {
      error = "make_options threw a non-standard exception";
    }
    if (error.empty()) {
      slot.index = index;
      slot.inner = std::move(options.observer);
      options.observer = std::shared_ptr<RunObserver>(shared_from_this(), &slot);
      try {
        RunHandle run = graph_->start(std::move(options));
        bool cancel_now = false;
        std::shared_ptr<RunObserver> drop;
        {
          std::lock_guard<std::mutex> lock(mutex_);
          if (slot.finished) {
            drop = release_locked(k);
          } else {
            slot.run = run;
            slot.started = true;
            cancel_now = cancelled_;  // cancel() ran before the run was recorded
          }
        }
        if (cancel_now) run.cancel();
        return;
      } catch (const std::exception& e) {
        error = e.what();
      }
    }
    std::shared_ptr<RunObserver> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop = release_locked(k);
      --in_flight_;
      ++completed_;
      if (!abandoned_) finished_.push_back(Finished{index, RunHandle(), std::move(error)});
    }
    announce();
  }

  void run_finished(Slot& slot, const RunHandle& run) {
    // The run's own observer first: a checkpoint records the end before the caller sees it.
    if (slot.inner) slot.inner->on_run_finished(run);
    std::shared_ptr<RunObserver> drop;  // the embedder's observer dies unlocked
    RunHandle drop_run;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --in_flight_;
      ++completed_;
      if (!abandoned_) finished_.push_back(Finished{slot.index, run, {}});
      if (slot.started) {
        drop_run = std::move(slot.run);
        drop = release_locked(static_cast<std::size_t>(&slot - slots_.data()));
      } else {
        slot.finished = true;  // start_one frees the slot when start() returns
      }
    }
    announce();
    refill(kUnbounded);
  }

  // Returns the slot to the free list; the caller drops the returned observer unlocked.
  std::shared_ptr<RunObserver> release_locked(std::size_t k) {
    Slot& slot = slots_[k];
    slot.started = false;
    slot.finished = false;
    slot.run = RunHandle();
    free_slots_.push_back(k);
    return std::move(slot.inner);
  }

  void announce() {
    bool wake;
    bool ready;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      // A waiter sleeps until it has the group it asked for: waking it earlier would
      // only send it back to sleep (after a trip through the GIL, in the bindings).
      wake = finished_.size() >= wanted_;
      ready = on_ready_ && !abandoned_;  // nobody listens after ~Batch
    }
    if (wake) changed_.notify_all();
    if (ready) on_ready_();
  }

  const std::shared_ptr<CompiledGraph> graph_;
  const std::size_t count_;
  const std::size_t window_;
  const std::function<RunOptions(std::size_t)> make_options_;
  const std::function<void()> on_ready_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<Slot> slots_;  // never resized: runs point into it
  std::vector<std::size_t> free_slots_;
  std::vector<Finished> finished_;
  std::size_t next_index_ = 0;  // the next input to start
  std::size_t in_flight_ = 0;
  std::size_t most_in_flight_ = 0;
  std::size_t completed_ = 0;   // finished, or never started
  std::size_t taken_ = 0;       // handed out by next()
  std::size_t wanted_ = 1;      // finished runs the thread waiting in next() needs
  bool refilling_ = false;
  bool cancelled_ = false;
  bool abandoned_ = false;
};

Batch::Batch(std::shared_ptr<CompiledGraph> graph, std::size_t count, BatchOptions options) {
  if (!graph) throw EngineError("a batch needs a compiled graph");
  if (!options.make_options) {
    throw EngineError("a batch needs make_options, which gives each input's RunOptions");
  }
  state_ = std::make_shared<State>(std::move(graph), count, std::move(options));
  state_->refill(state_->window());
}

Batch::~Batch() {
  try {
    state_->abandon();
  } catch (...) {  // NOLINT(bugprone-empty-catch): a destructor has nobody to report to
  }
}

bool Batch::next(std::vector<Finished>& out, std::chrono::nanoseconds timeout,
                 std::size_t at_least) {
  return state_->next(out, timeout, at_least);
}
void Batch::cancel() { state_->cancel(); }
void Batch::interrupt() { state_->cancel(/*interrupted=*/true); }
std::size_t Batch::size() const noexcept { return state_->count(); }
std::size_t Batch::window() const noexcept { return state_->window(); }
std::size_t Batch::started() const { return state_->started(); }
std::size_t Batch::in_flight() const { return state_->in_flight(); }
std::size_t Batch::most_in_flight() const { return state_->most_in_flight(); }
bool Batch::done() const { return state_->done(); }

}  // namespace counterpoint
