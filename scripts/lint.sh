#!/usr/bin/env bash
# Lint and type checks, as CI runs them (.ci/run). Each check runs even if an earlier one
# failed; the summary lists them all and the exit status is nonzero if any failed.
#
#   ruff         Python lint (config: [tool.ruff] in pyproject.toml)
#   mypy         mypy --strict on examples/ against the installed package's annotations
#                ([tool.mypy] in pyproject.toml)
#   imports      import layering of the package, lint-imports ([tool.importlinter])
#   stubs        python/counterpoint/_core.pyi matches the built module
#                (scripts/gen_core_stubs.py --check)
#   clang-tidy   the engine and the bindings (.clang-tidy), against a compile database
#                configured (not built) in build/lint
#
# Usage: scripts/lint.sh [--install] [CHECK ...]      (default: all checks)
#   --install    first install the pinned tools of the `dev` extra for $PYTHON (without
#                reinstalling counterpoint itself)
#   PYTHON=...   interpreter with counterpoint installed (default: python3)
#   JOBS=N       clang-tidy parallelism (default: number of cores)
#
# Fixers for what the checks find:
#   ruff check --fix .            (add --unsafe-fixes after reviewing the diff)
#   run-clang-tidy.py -p build/lint -fix '/cpp/(src|bindings)/'
#   python scripts/gen_core_stubs.py          (after rebuilding the extension)
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
ALL_CHECKS=(ruff mypy imports stubs clang-tidy)

install=0
checks=()
for arg in "$@"; do
  case "$arg" in
    --install) install=1 ;;
    ruff | mypy | imports | stubs | clang-tidy) checks+=("$arg") ;;
    -h | --help) sed -n '2,25p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "unknown argument '$arg' (checks: ${ALL_CHECKS[*]})" >&2; exit 2 ;;
  esac
done
((${#checks[@]})) || checks=("${ALL_CHECKS[@]}")

log() { printf '\n=== %s\n' "$*"; }
# Console scripts of $PYTHON's environment first (ruff, lint-imports, clang-tidy, ...).
BIN="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
export PATH="$BIN:$PATH"

if ((install)); then
  log "installing the dev extra's tools for $PYTHON"
  # The pins live in one place, pyproject.toml's `dev` extra.
  "$PYTHON" - <<'EOF' >"${TMPDIR:-/tmp}/counterpoint-dev-requirements.txt" || exit 2
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["project"]["optional-dependencies"]["dev"]))
EOF
  "$PYTHON" -m pip install --quiet -r "${TMPDIR:-/tmp}/counterpoint-dev-requirements.txt" || exit 2
fi

run_ruff() { "$PYTHON" -m ruff check --no-cache "$ROOT"; }

run_mypy() {
  # From a directory outside the checkout: `import counterpoint` must resolve to the
  # installed package (py.typed, _core.pyi), as it does for users.
  local cache="${TMPDIR:-/tmp}/counterpoint-mypy-cache"
  (cd "${TMPDIR:-/tmp}" && "$PYTHON" -m mypy --config-file "$ROOT/pyproject.toml" \
    --cache-dir "$cache" "$ROOT/examples")
}

run_imports() {
  # lint-imports reads [tool.importlinter] from the current directory's pyproject.toml
  # and analyses the package importable by $PYTHON (the installed one).
  "$PYTHON" -c 'import counterpoint' || return 1
  lint-imports --config "$ROOT/pyproject.toml" --no-cache
}

run_stubs() { "$PYTHON" "$ROOT/scripts/gen_core_stubs.py" --check; }

run_clang_tidy() {
  local dir="$ROOT/build/lint"
  local pybind11_dir
  pybind11_dir="$("$PYTHON" -m pybind11 --cmakedir)" || return 1
  # Configure only: clang-tidy needs the compile commands, not objects. No
  # unity build (clang-tidy must see each source file) and the native tests included.
  cmake -S "$ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DCOUNTERPOINT_UNITY_BINDINGS=OFF \
    -DCOUNTERPOINT_BUILD_PYTHON=ON -DCOUNTERPOINT_BUILD_TESTS=ON \
    -DPython_EXECUTABLE="$(command -v "$PYTHON")" -Dpybind11_DIR="$pybind11_dir" \
    >"$dir.configure.log" 2>&1 || { cat "$dir.configure.log"; return 1; }
  local runner
  runner="$(command -v run-clang-tidy.py || command -v run-clang-tidy)" || {
    echo "run-clang-tidy not found: pip install '.[dev]' (or scripts/lint.sh --install)" >&2
    return 1
  }
  echo "clang-tidy $(clang-tidy --version | grep -o 'version [0-9.]*')"
  "$PYTHON" "$runner" -p "$dir" -j "${JOBS:-$(nproc)}" -quiet \
    -clang-tidy-binary "$(command -v clang-tidy)" \
    -extra-arg=-Wno-unknown-warning-option -extra-arg=-Wno-ignored-optimization-argument \
    "$ROOT/cpp/(src|bindings)/.*\.cpp$"
}

declare -A result seconds_taken
status=0
for check in "${checks[@]}"; do
  log "$check"
  started=$(date +%s.%N)
  if "run_${check//-/_}"; then
    result[$check]=passed
  else
    result[$check]=FAILED
    status=1
  fi
  seconds_taken[$check]=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
done

log "lint summary"
for check in "${checks[@]}"; do
  printf '  %-10s %-7s %6ss\n' "$check" "${result[$check]}" "${seconds_taken[$check]}"
done
exit "$status"
