#!/usr/bin/env bash
# Refresh requirements/ci.lock, the exact versions CI, the images and the README install.
#
#   bash scripts/lock.sh            re-resolve, keeping locked versions where they still fit
#   bash scripts/lock.sh --upgrade  take the newest versions pyproject.toml's ranges allow
#
# The package's own requirements (pyproject.toml) stay ranges for library users; only this lock is exact.
# It is resolved for CPython 3.11 on x86-64 Linux (CI and the images); `uv` comes with the dev extra.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY="${PYTHON:-python3}"
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv
"$PY" -m uv pip compile pyproject.toml \
  --extra trainer --extra operator --extra dev --extra bench --extra video --extra export \
  --constraint requirements/pins.txt \
  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
  --custom-compile-command "bash scripts/lock.sh" \
  -o requirements/ci.lock "$@"
