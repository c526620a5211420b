#!/usr/bin/env bash
# GPU readiness check (issue #15 §4): PPO with a GPU learner on Atari, SAC/TD3 updates/s on GPU vs CPU,
# APPO/IMPALA throughput over 1-15 env runners, the nccl data-parallel learners (two GPUs or more).
# Writes $OUT/gpu_check.json and $OUT/gpu_check.md; under 10 minutes on one GPU and 16 cores.
#
#   OUT=results bash bench/gpu_check.sh                  on a GPU machine (fails, exit 1, without CUDA)
#   OUT=results bash bench/gpu_check.sh --cpu --smoke    every stage tiny on the CPU (CI runs this)
#
# Needs the project's locked packages (bench extra included): pip install -r requirements/ci.lock.
# Exit status: 0 all stages ran (or were skipped with a recorded reason), 1 a stage failed or CUDA is
# missing without --cpu, 2 bad arguments or no OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# This checkout's kuberl, in the driver and in the Ray workers (which inherit the environment).
export PYTHONPATH="$ROOT/trainer_image:$ROOT/operator${PYTHONPATH:+:$PYTHONPATH}"
export RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled PYTHONUNBUFFERED=1
if [ -z "${OUT:-}" ]; then
  echo "gpu_check: OUT: required, the directory to write results to (OUT=dir bash bench/gpu_check.sh)" >&2
  exit 2
fi
exec "${PYTHON:-python3}" bench/gpu_check.py --out "$OUT" "$@"
