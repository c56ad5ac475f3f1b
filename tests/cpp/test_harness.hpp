#pragma once
// A deliberately tiny test harness: the engine must build and test with nothing but a
// compiler, oneTBB and nlohmann, so that the sanitizer builds need no extra packages.
//
//   TEST(name) { CHECK(x); CHECK_EQ(a, b); REQUIRE(p != nullptr); CHECK_THROWS(Err, f()); }
//
// CHECK* record a failure and let the test go on (one run shows every broken check);
// REQUIRE* end the test, for checks that later lines depend on.
#include <pthread.h>

#include <atomic>
#include <cstddef>
#include <chrono>
#include <functional>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace cptest {

// The stack size of the calling thread (0 if it cannot be read).
inline std::size_t current_stack_size() {
  pthread_attr_t attr;
  if (pthread_getattr_np(pthread_self(), &attr) != 0) return 0;
  std::size_t size = 0;
  pthread_attr_getstacksize(&attr, &size);
  pthread_attr_destroy(&attr);
  return size;
}

// Counts how many of something run at once, and the most that ever did.
struct Concurrency {
  std::atomic<int> now{0};
  std::atomic<int> most{0};
  void enter() {
    const int value = now.fetch_add(1) + 1;
    int seen = most.load();
    while (value > seen && !most.compare_exchange_weak(seen, value)) {
    }
  }
  void leave() { now.fetch_sub(1); }
};

using TestFn = void (*)();

struct Registrar {
  Registrar(const char* name, TestFn fn, const char* file, int line);
};

// Thrown by REQUIRE* to leave the current test; the failure was reported already.
struct Abort {};

void report_failure(const char* file, int line, const std::string& message);

// Checks a JSON document's syntax (no schema); the tests cannot see nlohmann, which is
// private to the engine target.
bool json_valid(const std::string& text);

template <class T, class = void>
struct is_streamable : std::false_type {};
template <class T>
struct is_streamable<T, std::void_t<decltype(std::declval<std::ostream&>() << std::declval<const T&>())>>
    : std::true_type {};

template <class T>
std::string show(const T& value) {
  if constexpr (std::is_same_v<T, std::nullptr_t>) {
    return "nullptr";
  } else if constexpr (is_streamable<T>::value) {
    std::ostringstream out;
    out << value;
    return out.str();
  } else if constexpr (std::is_enum_v<T>) {
    return "enum(" + std::to_string(static_cast<long long>(value)) + ")";
  } else {
    return "<unprintable>";
  }
}

template <class A, class B>
bool check_eq(const A& a, const B& b, const char* a_text, const char* b_text, const char* file,
              int line) {
  if (a == b) return true;
  report_failure(file, line,
                 std::string("CHECK_EQ(") + a_text + ", " + b_text + ")\n      left:  " + show(a) +
                     "\n      right: " + show(b));
  return false;
}

// Polls `condition` until it holds or `timeout` passes; for effects that land on another
// thread shortly after the call under test returns (observers, late completions).
inline bool eventually(const std::function<bool()>& condition,
                       std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// The exception `f` throws if it is an E (to look at its message or fields), else nullopt.
template <class E, class F>
std::optional<E> thrown(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  } catch (...) {
  }
  return std::nullopt;
}

}  // namespace cptest

#define CPTEST_CAT2(a, b) a##b
#define CPTEST_CAT(a, b) CPTEST_CAT2(a, b)

#define TEST(name)                                                                       \
  static void CPTEST_CAT(cptest_fn_, name)();                                            \
  static const ::cptest::Registrar CPTEST_CAT(cptest_reg_, name)(                        \
      #name, &CPTEST_CAT(cptest_fn_, name), __FILE__, __LINE__);                         \
  static void CPTEST_CAT(cptest_fn_, name)()

#define CHECK(cond)                                                                      \
  (static_cast<bool>(cond)                                                               \
       ? true                                                                            \
       : (::cptest::report_failure(__FILE__, __LINE__, "CHECK(" #cond ")"), false))

#define CHECK_EQ(a, b) ::cptest::check_eq((a), (b), #a, #b, __FILE__, __LINE__)

#define REQUIRE(cond)                                                                    \
  do {                                                                                   \
    if (!CHECK(cond)) throw ::cptest::Abort{};                                           \
  } while (0)

#define REQUIRE_EQ(a, b)                                                                 \
  do {                                                                                   \
    if (!CHECK_EQ(a, b)) throw ::cptest::Abort{};                                        \
  } while (0)

#define CHECK_THROWS(ExceptionType, expr)                                                \
  do {                                                                                   \
    bool cptest_threw_ = false;                                                          \
    try {                                                                                \
      (void)(expr);                                                                      \
    } catch (const ExceptionType&) {                                                     \
      cptest_threw_ = true;                                                              \
    } catch (...) {                                                                      \
      ::cptest::report_failure(__FILE__, __LINE__,                                       \
                               "CHECK_THROWS(" #ExceptionType ", " #expr                 \
                               "): threw something else");                               \
      cptest_threw_ = true;                                                              \
    }                                                                                    \
    if (!cptest_threw_) {                                                                \
      ::cptest::report_failure(__FILE__, __LINE__,                                       \
                               "CHECK_THROWS(" #ExceptionType ", " #expr                 \
                               "): did not throw");                                      \
    }                                                                                    \
  } while (0)
