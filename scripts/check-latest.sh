#!/usr/bin/env bash
# Try the newest versions pyproject.toml's ranges allow, and report what breaks (a scheduled-style check;
# CI keeps installing requirements/ci.lock). Writes nothing in the repository:
#   1. resolves a lock with --upgrade into a temporary folder and prints what changed against ci.lock;
#   2. installs it into a fresh virtual environment and runs lint, types and the unit tests there.
# Exit status: 0 when the newest versions pass, 1 when something breaks (the log names it).
#   bash scripts/check-latest.sh [pytest args, default: tests/unit]
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv

echo "== resolving the newest versions"
"$PY" -m uv pip compile pyproject.toml --quiet --upgrade --no-header --no-annotate \
  --extra trainer --extra operator --extra dev --extra bench --extra video \
  --constraint requirements/pins.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 -o "$work/latest.txt" || exit 1
grep -E '^[A-Za-z0-9_.-]+==' requirements/ci.lock | sort >"$work/locked.txt"
sort "$work/latest.txt" | grep -E '^[A-Za-z0-9_.-]+==' >"$work/newest.txt"
echo "== newer than the lock (locked -> newest)"
join -t= -j1 <(sed 's/==/=/' "$work/locked.txt" | sort -t= -k1,1) <(sed 's/==/=/' "$work/newest.txt" | sort -t= -k1,1) \
  | awk -F= '$2 != $3 { printf "  %-40s %s -> %s\n", $1, $2, $3 }'

echo "== installing them into a fresh environment"
"$PY" -m uv venv --quiet --python "$PY" "$work/venv" || exit 1
VPY="$work/venv/bin/python"
"$PY" -m uv pip install --quiet --python "$VPY" -r "$work/latest.txt" || { echo "RESULT: the newest versions do not install"; exit 1; }
"$PY" -m uv pip install --quiet --python "$VPY" --no-deps -e . || exit 1

status=0
echo "== ruff, mypy"
"$VPY" -m ruff check . || status=1
"$VPY" -m mypy || status=1
echo "== pytest ${*:-tests/unit}"
"$VPY" -m pytest -q -x "${@:-tests/unit}" || status=1
if ((status)); then echo "RESULT: something breaks with the newest versions (see above)"; else echo "RESULT: the newest versions pass"; fi
exit "$status"
