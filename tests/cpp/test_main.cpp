// Runs every TEST in registration order and prints "N passed, N failed" as its last line.
//
//   engine_tests                 all tests
//   engine_tests run cancel      only tests whose name contains "run" or "cancel"
//   engine_tests --list          names only
//
// CPTEST_TEST_TIMEOUT_S (default 120) bounds each test: a deadlocked engine must fail
// the build instead of hanging CI.
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "test_harness.hpp"

namespace cptest {

namespace {

struct TestCase {
  const char* name;
  TestFn fn;
  const char* file;
  int line;
};

std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

std::mutex& output_mutex() {
  static std::mutex mutex;
  return mutex;
}

// Checks may fail on an agent's thread, so failures are counted atomically and the
// runner compares the count before and after each test.
std::atomic<long> failures{0};
std::atomic<const char*> current_test{nullptr};

// ---- JSON syntax check ------------------------------------------------------------

struct JsonParser {
  const std::string& s;
  std::size_t i = 0;
  int depth = 0;

  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool lit(const char* word) {
    const std::size_t n = std::strlen(word);
    if (s.compare(i, n, word) != 0) return false;
    i += n;
    return true;
  }
  bool string() {
    if (i >= s.size() || s[i] != '"') return false;
    for (++i; i < s.size(); ++i) {
      const char c = s[i];
      if (c == '"') {
        ++i;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c == '\\') {
        if (++i >= s.size()) return false;
        if (s[i] == 'u') {
          for (int k = 0; k < 4; ++k) {
            if (++i >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
          }
        } else if (!std::strchr("\"\\/bfnrt", s[i])) {
          return false;
        }
      }
    }
    return false;
  }
  bool digits() {
    const std::size_t from = i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
    return i > from;
  }
  bool number() {
    if (i < s.size() && s[i] == '-') ++i;
    if (!digits()) return false;
    if (i < s.size() && s[i] == '.') {
      ++i;
      if (!digits()) return false;
    }
    if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
      ++i;
      if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
      if (!digits()) return false;
    }
    return true;
  }
  bool value() {
    if (++depth > 200) return false;
    ws();
    bool ok = false;
    if (i >= s.size()) {
      ok = false;
    } else if (s[i] == '{') {
      ok = container('}', true);
    } else if (s[i] == '[') {
      ok = container(']', false);
    } else if (s[i] == '"') {
      ok = string();
    } else if (s[i] == '-' || std::isdigit(static_cast<unsigned char>(s[i]))) {
      ok = number();
    } else {
      ok = lit("true") || lit("false") || lit("null");
    }
    --depth;
    return ok;
  }
  bool container(char close, bool object) {
    ++i;
    ws();
    if (i < s.size() && s[i] == close) {
      ++i;
      return true;
    }
    for (;;) {
      if (object) {
        ws();
        if (!string()) return false;
        ws();
        if (i >= s.size() || s[i] != ':') return false;
        ++i;
      }
      if (!value()) return false;
      ws();
      if (i >= s.size()) return false;
      if (s[i] == close) {
        ++i;
        return true;
      }
      if (s[i] != ',') return false;
      ++i;
    }
  }
};

}  // namespace

Registrar::Registrar(const char* name, TestFn fn, const char* file, int line) {
  registry().push_back(TestCase{name, fn, file, line});
}

void report_failure(const char* file, int line, const std::string& message) {
  failures.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> lock(output_mutex());
  std::printf("    %s:%d: %s\n", file, line, message.c_str());
  std::fflush(stdout);
}

bool json_valid(const std::string& text) {
  JsonParser parser{text};
  if (!parser.value()) return false;
  parser.ws();
  return parser.i == text.size();
}

}  // namespace cptest

namespace {

bool selected(const char* name, int argc, char** argv) {
  bool any_filter = false;
  for (int a = 1; a < argc; ++a) {
    if (argv[a][0] == '-') continue;
    any_filter = true;
    if (std::strstr(name, argv[a])) return true;
  }
  return !any_filter;
}

// Ends the process if one test runs past its budget, naming the test: a deadlock would
// otherwise hang CI with no clue where.
class Watchdog {
 public:
  explicit Watchdog(std::chrono::seconds budget) : budget_(budget), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      done_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  void test_started() {
    std::lock_guard<std::mutex> lock(mutex_);
    deadline_ = std::chrono::steady_clock::now() + budget_;
    armed_ = true;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!done_) {
      wake_.wait_for(lock, std::chrono::milliseconds(200));
      if (armed_ && !done_ && std::chrono::steady_clock::now() > deadline_) {
        const char* test = cptest::current_test.load();
        std::printf("\nTIMEOUT: test %s ran longer than %llds\n", test ? test : "?",
                    static_cast<long long>(budget_.count()));
        std::printf("0 passed, 1 failed\n");
        std::fflush(stdout);
        ::_exit(3);
      }
    }
  }

  std::chrono::seconds budget_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool done_ = false;
  bool armed_ = false;
  std::chrono::steady_clock::time_point deadline_;
  std::thread thread_;
};

}  // namespace

int main(int argc, char** argv) {
  const auto& tests = cptest::registry();
  for (int a = 1; a < argc; ++a) {
    if (std::strcmp(argv[a], "--list") == 0) {
      for (const auto& test : tests) std::printf("%s\n", test.name);
      return 0;
    }
  }

  long budget = 120;
  if (const char* env = std::getenv("CPTEST_TEST_TIMEOUT_S")) budget = std::atol(env);
  Watchdog watchdog{std::chrono::seconds(budget > 0 ? budget : 120)};

  int passed = 0;
  int failed = 0;
  std::vector<const char*> failed_names;
  for (const auto& test : tests) {
    if (!selected(test.name, argc, argv)) continue;
    {
      std::lock_guard<std::mutex> lock(cptest::output_mutex());
      std::printf("[ RUN    ] %s\n", test.name);
      std::fflush(stdout);
    }
    cptest::current_test.store(test.name);
    watchdog.test_started();
    const long before = cptest::failures.load();
    const auto started = std::chrono::steady_clock::now();
    bool ok = true;
    try {
      test.fn();
    } catch (const cptest::Abort&) {
      ok = false;
    } catch (const std::exception& e) {
      cptest::report_failure(test.file, test.line,
                             std::string("uncaught exception: ") + e.what());
      ok = false;
    } catch (...) {
      cptest::report_failure(test.file, test.line, "uncaught non-standard exception");
      ok = false;
    }
    if (cptest::failures.load() != before) ok = false;
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started)
                        .count();
    {
      std::lock_guard<std::mutex> lock(cptest::output_mutex());
      std::printf("[ %s ] %s (%lld ms)\n", ok ? "    OK" : "FAILED", test.name,
                  static_cast<long long>(ms));
      std::fflush(stdout);
    }
    if (ok) {
      ++passed;
    } else {
      ++failed;
      failed_names.push_back(test.name);
    }
  }
  cptest::current_test.store(nullptr);

  std::lock_guard<std::mutex> lock(cptest::output_mutex());
  for (const char* name : failed_names) std::printf("FAILED: %s\n", name);
  std::printf("%d passed, %d failed\n", passed, failed);
  std::fflush(stdout);
  return failed == 0 ? 0 : 1;
}
