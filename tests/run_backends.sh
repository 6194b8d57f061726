#!/usr/bin/env bash
# Runs the test suite once per Keras backend (torch, tensorflow, jax).
# A backend whose run fails, or collects no test, fails the whole run.
# Tests run in parallel worker processes (pytest-xdist): UPT_TEST_WORKERS of them, by default one per CPU core,
# at most 4 (each worker holds a backend framework in memory). UPT_TEST_WORKERS=0 runs them in this process.
# Usage: bash tests/run_backends.sh [pytest args...]
set -u
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1
workers=${UPT_TEST_WORKERS:-$(python -c "import os; print(min(4, os.cpu_count() or 1))")}
parallel=()
if [ "$workers" -gt 0 ]; then
  parallel=(-n "$workers")
fi
status=0
summary=""
for backend in torch tensorflow jax; do
  echo "=== KERAS_BACKEND=$backend"
  start=$SECONDS
  KERAS_BACKEND=$backend python -m pytest -q -p no:cacheprovider --durations=5 "${parallel[@]}" "$@" tests
  rc=$?
  if [ "$rc" -eq 5 ]; then
    echo "no tests were collected for backend $backend"
  fi
  [ "$rc" -eq 0 ] || status=1
  summary="$summary\n  $backend: exit $rc in $((SECONDS - start)) s"
done
printf "=== summary:$summary\n"
exit $status
