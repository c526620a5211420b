"""Training fingerprints of the examples: proof that a refactoring kept behaviour bit-identical.

For each example job that trains, build its algorithm with the example's fixed seed and in-driver
sampling (`resources.envRunners: 0`, one learner), run a few iterations and print the sha256 of its
whole checkpoint state (weights, optimizer moments, replay contents, counters, RNG states, and the
key names they sit under; wall-clock times excluded). Equal hashes before and after a change mean
the same training and the same checkpoint keys.

    python3 scripts/fingerprint.py                      # every example, "name sha256" per line
    python3 scripts/fingerprint.py ppo-job dqn-cartpole # some examples
    python3 scripts/fingerprint.py --save-checkpoints DIR  # also write each run's checkpoint
    python3 scripts/fingerprint.py --restore DIR ppo-job   # hash of DIR/ppo-job restored, not trained

A checkpoint written by an older version restores unchanged when `--restore` prints the hash that
version printed when it wrote it.

Offline examples (BC, MARWIL, CQL) read a small dataset this script records first from a seeded
in-driver run (their example `input` folders are not in the repository). Skipped: `ppo-external`
(needs an external client).

Compare like with like: cql-pendulum's hash came out different when other examples had run before it
in the same process (its data goes through Ray Data, which is started once per process); run alone,
it is stable (`python3 scripts/fingerprint.py cql-pendulum`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
SKIPPED = {"ppo-external": "needs an external client to step the env"}
# Offline examples and the online example whose in-driver run records their dataset.
OFFLINE_SOURCES = {
    "bc-cartpole": "ppo-job",
    "marwil-cartpole": "ppo-job",
    "cql-pendulum": "sac-pendulum",
}
# Iterations of each source run: enough rows for the offline examples' train_batch_size.
RECORD_ITERATIONS = {"ppo-job": 2, "sac-pendulum": 24}
# Keys whose values are wall-clock measurements, not training results.
VOLATILE = {"time_total"}


def example_names() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.yaml") if p.stem not in SKIPPED)


def small_job(name: str, run_dir: Path) -> dict[str, Any]:
    """The example's job document, made deterministic and local: in-driver sampling, one learner,
    no evaluation, no Tune sweep, no recording, checkpoints under `run_dir`."""
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    spec = doc["spec"]
    spec.setdefault("resources", {})
    spec["resources"]["envRunners"] = 0
    spec["resources"].pop("learners", None)
    for key in ("tune", "evaluation", "output", "checkpoint"):
        spec.pop(key, None)
    spec["runDir"] = str(run_dir)
    return doc


def walk(value: Any, path: str = "") -> Iterator[bytes]:
    """A canonical byte stream of a checkpoint state: keys in sorted order, tensors and arrays by
    dtype, shape and raw bytes."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=str):
            if key in VOLATILE:
                continue
            yield f"{path}/{key}".encode()
            yield from walk(value[key], f"{path}/{key}")
    elif isinstance(value, list | tuple):
        yield f"[{len(value)}]".encode()
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")
    elif isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous()
        yield f"tensor {t.dtype} {tuple(t.shape)}".encode()
        yield t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
    elif isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        yield f"array {a.dtype} {a.shape}".encode()
        yield a.tobytes() if a.dtype != object else repr(a.tolist()).encode()
    else:
        yield repr(value).encode()


def state_hash(state: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    for chunk in walk(state):
        h.update(chunk)
    return h.hexdigest()


def record_dataset(source: str, out: Path) -> None:
    """Record what a seeded in-driver run of `source` samples into `out` (Parquet)."""
    from kuberl import build_algorithm

    doc = small_job(source, out.parent / f"{source}-recording")
    doc["spec"]["output"] = {"uri": str(out)}
    algo = build_algorithm(doc)
    try:
        for _ in range(RECORD_ITERATIONS[source]):
            algo.train()
    finally:
        algo.stop()


def fingerprint(
    name: str, work: Path, iterations: int, save: Path | None, restore: Path | None = None
) -> str:
    from kuberl import build_algorithm

    doc = small_job(name, work / name)
    if name in OFFLINE_SOURCES:
        data = work / f"data-{OFFLINE_SOURCES[name]}"
        if not data.exists():
            record_dataset(OFFLINE_SOURCES[name], data)
        # One reader and no shuffle buffer: rows arrive in file order, so the run is deterministic.
        doc["spec"]["input"] = {"uris": [str(data)], "numReaders": 1, "shuffleBufferSize": 0}
    algo = build_algorithm(doc)
    try:
        if restore is not None:
            algo.restore(str(restore / name))
        else:
            for _ in range(iterations):
                algo.train()
        digest = state_hash(algo.get_state())
        if save is not None:
            algo.save(str(save / name))
    finally:
        algo.stop()
    return digest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("examples", nargs="*", help="example names (file stems); default: all that train")
    parser.add_argument("--iterations", type=int, default=2, help="training iterations per example")
    parser.add_argument("--save-checkpoints", type=Path, default=None, metavar="DIR")
    parser.add_argument(
        "--restore", type=Path, default=None, metavar="DIR", help="restore DIR/<example> instead of training"
    )
    args = parser.parse_args(argv)
    # Examples name user code by import path from the repository root (ppo-callbacks:
    # `examples.callbacks:…`), as `kuberl run` resolves it from the directory it is run in;
    # run as `python3 scripts/fingerprint.py`, only scripts/ would be on the path.
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    names = args.examples or example_names()
    unknown = [n for n in names if not (EXAMPLES / f"{n}.yaml").exists() or n in SKIPPED]
    if unknown:
        print(f"error: examples: not a trainable example: {', '.join(unknown)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kuberl-fingerprint-") as tmp:
        for name in names:
            print(
                f"{name} {fingerprint(name, Path(tmp), args.iterations, args.save_checkpoints)}", flush=True
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
