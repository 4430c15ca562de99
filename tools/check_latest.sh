#!/usr/bin/env bash
# Move the version lock forward: a fresh venv with the newest releases the requirement files'
# lower bounds allow (upper bounds lifted; exact pins such as mmengine==0.10.7 kept), the full
# test suite, and on success requirements/constraints.txt and the upper bounds rewritten from
# that venv (tools/lock_requirements.py freeze). Nothing is written when the suite fails: the
# failures are what to fix (or to pin below) before the lock can move.
#
#   tools/check_latest.sh              # venv in .venv-latest/, kept for inspection
#   VENV=/tmp/v tools/check_latest.sh  # elsewhere
#   PYTEST_ARGS="-x -q" tools/check_latest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-latest}
PY=${PYTHON3:-python3}
PYTEST_ARGS=${PYTEST_ARGS:--q}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$PY" tools/lock_requirements.py unbounded requirements/runtime.txt requirements/tests.txt > "$TMP/latest.txt"
"$PY" tools/lock_requirements.py unbounded requirements/parity.txt > "$TMP/parity.txt"
"$VENV/bin/pip" install --upgrade -r "$TMP/latest.txt" -e .
"$VENV/bin/pip" install --upgrade --no-deps --no-build-isolation -r "$TMP/parity.txt"

echo "== newest allowed versions installed; running the suite"
start=$(date +%s)
VLP_UNLOCKED=1 "$VENV/bin/python" -m pytest tests $PYTEST_ARGS
echo "== suite passed in $(( $(date +%s) - start )) s; rewriting the lock"
"$VENV/bin/python" tools/lock_requirements.py freeze --venv "$VENV"
git --no-pager diff --stat -- requirements/ || true
