#!/usr/bin/env bash
# Builds and runs the native engine tests (tests/cpp, no Python involved) in up to three
# configurations, each in its own build tree under build/native-<mode>:
#
#   plain  optimised, with asserts on
#   tsan   ThreadSanitizer: the engine is all cross-thread hand-offs
#   asan   AddressSanitizer + UBSan (+ LeakSanitizer): lifetimes of runs and graphs
#
# Each mode's tests run once per oneTBB worker count (COUNTERPOINT_WORKERS), by default
# 1, 2 and 8: one worker serializes every flow-graph hand-off, eight oversubscribe the
# cores, and races and lost wake-ups hide in different places in each.
#
# Usage: scripts/run_native_tests.sh [plain|tsan|asan ...] [-- test-name-filter ...]
#   PYTHON=/path/to/python   interpreter whose tbb-devel / nlohmann-json wheels are used
#                            (default python3; installed for it when missing)
#   JOBS=N                   build parallelism (default: ninja's)
#   WORKERS="1 2 8"          oneTBB worker counts to run each mode with
#   CPTEST_TEST_TIMEOUT_S=60 per-test watchdog: a test running longer aborts the run
#                            with its name
#   VERBOSE=1                print every test, not only failures and the totals
# Exits nonzero if any selected mode fails to build or has a failing test or a
# sanitizer report.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
ALL_MODES=(plain tsan asan)

modes=()
filters=()
while (($#)); do
  case "$1" in
    plain | tsan | asan) modes+=("$1") ;;
    all) modes+=("${ALL_MODES[@]}") ;;
    --) shift; filters=("$@"); break ;;
    -h | --help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown mode '$1' (expected: plain, tsan, asan, all)" >&2; exit 2 ;;
  esac
  shift
done
((${#modes[@]})) || modes=("${ALL_MODES[@]}")
read -r -a worker_counts <<<"${WORKERS:-1 2 8}"
for w in "${worker_counts[@]}"; do
  [[ "$w" =~ ^[1-9][0-9]*$ ]] || { echo "WORKERS: '$w' is not a positive number" >&2; exit 2; }
done
export CPTEST_TEST_TIMEOUT_S="${CPTEST_TEST_TIMEOUT_S:-60}"

log() { printf '\n=== %s\n' "$*"; }

# ---- tools and wheels ----------------------------------------------------------------

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "PYTHON=$PYTHON not found" >&2
  exit 2
fi

# CMake reads TBBConfig.cmake and json.hpp out of these wheels (cmake/FindFromWheels.cmake),
# so they must belong to the very interpreter passed as Python_EXECUTABLE.
if ! "$PYTHON" - <<'EOF' >/dev/null 2>&1
import importlib.metadata as md
md.version("tbb-devel")
md.version("nlohmann-json")
EOF
then
  log "installing tbb-devel and nlohmann-json for $PYTHON"
  "$PYTHON" -m pip install -q "tbb-devel==2023.2.0" nlohmann-json
fi

# The build needs CMake >= 3.21 and Ninja; take them from PyPI when the machine lacks them.
need_pip_tools=()
if ! command -v cmake >/dev/null 2>&1 ||
  ! cmake -P /dev/stdin <<<'if(CMAKE_VERSION VERSION_LESS 3.21)
message(FATAL_ERROR old)
endif()' >/dev/null 2>&1; then
  need_pip_tools+=(cmake)
fi
command -v ninja >/dev/null 2>&1 || need_pip_tools+=(ninja)
if ((${#need_pip_tools[@]})); then
  log "installing ${need_pip_tools[*]} from PyPI"
  "$PYTHON" -m pip install -q "${need_pip_tools[@]}"
  # pip puts console scripts next to the interpreter, which may not be on PATH.
  PATH="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
  export PATH
fi

# Where $PYTHON's wheels put oneTBB: the CMake config (tbb-devel) and libtbb.so.12 (the
# `tbb` wheel it depends on, in <prefix>/lib). TBB_DIR is passed explicitly because a
# build tree caches it: reusing build/native-* with another interpreter would otherwise
# keep compiling against the first one's wheel.
PYTHON_EXE="$("$PYTHON" -c 'import sys; print(sys.executable)')"
mapfile -t tbb_paths < <("$PYTHON" - <<'EOF'
import importlib.metadata as md, pathlib
found = {}
for dist in ("tbb-devel", "tbb"):
    try:
        files = md.files(dist) or []
    except md.PackageNotFoundError:
        continue
    for f in files:
        if f.name in ("TBBConfig.cmake", "libtbb.so.12") and f.name not in found:
            found[f.name] = pathlib.Path(f.locate()).resolve().parent
print(found.get("TBBConfig.cmake", ""))
print(found.get("libtbb.so.12", ""))
EOF
)
TBB_CMAKE_DIR="${tbb_paths[0]:-}"
TBB_LIB_DIR="${tbb_paths[1]:-}"
if [[ -z "$TBB_CMAKE_DIR" || -z "$TBB_LIB_DIR" ]]; then
  echo "oneTBB's CMake config or libtbb.so.12 not found in the wheels of $PYTHON_EXE" >&2
  exit 2
fi
# The build tree's RUNPATH already points at libtbb; this is a fallback for moved trees.
export LD_LIBRARY_PATH="$TBB_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- one mode ------------------------------------------------------------------------

run_mode() {
  local mode="$1"
  local dir="$ROOT/build/native-$mode"
  local cxx_flags linker_flags release_flags
  # CMAKE_CXX_FLAGS_RELEASE normally adds "-O3 -DNDEBUG"; it is overridden so that
  # asserts stay on and the sanitizer builds keep their -O1.
  case "$mode" in
    plain)
      cxx_flags="-g"
      linker_flags=""
      release_flags="-O2"
      ;;
    tsan)
      cxx_flags="-fsanitize=thread -g -O1"
      linker_flags="-fsanitize=thread"
      release_flags=""
      ;;
    asan)
      cxx_flags="-fsanitize=address,undefined -fno-omit-frame-pointer -g -O1"
      linker_flags="-fsanitize=address,undefined"
      release_flags=""
      ;;
  esac

  log "[$mode] configure ($dir)"
  mkdir -p "$dir"
  cmake -S "$ROOT" -B "$dir" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release \
    -DCOUNTERPOINT_BUILD_PYTHON=OFF \
    -DCOUNTERPOINT_BUILD_TESTS=ON \
    -DPython_EXECUTABLE="$PYTHON_EXE" \
    -DTBB_DIR="$TBB_CMAKE_DIR" \
    -DCMAKE_CXX_FLAGS="$cxx_flags" \
    -DCMAKE_CXX_FLAGS_RELEASE="$release_flags" \
    -DCMAKE_EXE_LINKER_FLAGS="$linker_flags" \
    >"$dir/configure.log" 2>&1 || { cat "$dir/configure.log"; return 1; }

  # Each step checks its own status: run_mode is called as an `if` condition, where
  # bash ignores `set -e`, and a failed build must not fall through to a stale binary.
  log "[$mode] build"
  cmake --build "$dir" --target engine_tests ${JOBS:+--parallel "$JOBS"} || return 1

  local -a env_vars=()
  case "$mode" in
    tsan)
      local tsan="second_deadlock_stack=1 history_size=4"
      # oneTBB is not built with TSan; see the file for what it hides and why.
      [[ -f "$ROOT/scripts/tsan.supp" ]] && tsan+=" suppressions=$ROOT/scripts/tsan.supp"
      env_vars+=("TSAN_OPTIONS=$tsan ${TSAN_OPTIONS:-}")
      ;;
    asan)
      env_vars+=("ASAN_OPTIONS=detect_leaks=1 detect_stack_use_after_return=1 strict_string_checks=1 check_initialization_order=1 ${ASAN_OPTIONS:-}")
      local lsan="print_suppressions=0"
      [[ -f "$ROOT/scripts/lsan.supp" ]] && lsan+=" suppressions=$ROOT/scripts/lsan.supp"
      env_vars+=("LSAN_OPTIONS=$lsan ${LSAN_OPTIONS:-}")
      # halt_on_error: otherwise UBSan only prints and the run still passes.
      local ubsan="halt_on_error=1 print_stacktrace=1"
      [[ -f "$ROOT/scripts/ubsan.supp" ]] && ubsan+=" suppressions=$ROOT/scripts/ubsan.supp"
      env_vars+=("UBSAN_OPTIONS=$ubsan ${UBSAN_OPTIONS:-}")
      ;;
  esac
  local workers failed=0 started
  for workers in "${worker_counts[@]}"; do
    log "[$mode] run with $workers oneTBB worker(s)"
    started=$(date +%s.%N)
    # The full log stays in the build tree; the console gets failures and totals.
    if env "${env_vars[@]}" COUNTERPOINT_WORKERS="$workers" "$dir/engine_tests" "${filters[@]}" \
      >"$dir/run-w$workers.log"; then
      result["$mode/$workers"]=passed
    else
      result["$mode/$workers"]=FAILED
      failed=1
    fi
    if [[ -n "${VERBOSE:-}" ]]; then
      cat "$dir/run-w$workers.log"
    else
      grep -v -E '^\[ (RUN   |    OK) \]' "$dir/run-w$workers.log" || true
    fi
    seconds_taken["$mode/$workers"]=$(elapsed_since "$started")
  done
  return "$failed"
}

elapsed_since() {
  awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
}

# ---- all selected modes --------------------------------------------------------------

declare -A result seconds_taken
status=0
all_started=$(date +%s.%N)
for mode in "${modes[@]}"; do
  started=$(date +%s.%N)
  # A build failure leaves no per-worker result; the mode's row says so.
  result[$mode]=passed
  run_mode "$mode" || { result[$mode]=FAILED; status=1; }
  seconds_taken[$mode]=$(elapsed_since "$started")
done

log "summary (mode, oneTBB workers, result, seconds)"
for mode in "${modes[@]}"; do
  for workers in "${worker_counts[@]}"; do
    printf '  %-6s %2s  %-7s %6ss\n' "$mode" "$workers" "${result[$mode/$workers]:-not run}" \
      "${seconds_taken[$mode/$workers]:--}"
  done
  printf '  %-6s all %-7s %6ss (configure, build and runs)\n' "$mode" "${result[$mode]}" \
    "${seconds_taken[$mode]}"
done
printf '  total %ss\n' "$(elapsed_since "$all_started")"
exit "$status"
