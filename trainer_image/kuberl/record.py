"""`kuberl record`: record a trained policy's experience as offline data, without training it further.

The checkpoint's own job is rebuilt with `output` set and one local runner (no Ray actors), the
checkpoint is loaded, and the runner samples — exploring as during training, so the recorded
`action_logp` is the behaviour policy's — until `steps` env steps are written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kuberl.sampling import in_driver
from kuberl.spec import parse_job


def record_checkpoint(
    uri: str,
    *,
    output: str,
    steps: int,
    envs: int = 4,
    max_rows_per_file: int | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Sample `steps` env steps with the policy of checkpoint `uri` into `output`; returns what was written."""
    from kuberl.algorithms.base import SPEC_FILE
    from kuberl.algorithms.families.offline import OfflineAlgorithm
    from kuberl.algorithms.registry import algorithm_class
    from kuberl.build import build_single_agent
    from kuberl.checkpoint import load_checkpoint
    from kuberl.core.offline.writer import ExperienceWriter

    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    loaded = load_checkpoint(uri)
    doc = json.loads(loaded.files[SPEC_FILE])
    spec = doc["spec"]
    in_driver(spec, envsPerRunner=envs)
    spec["output"] = {"uri": output, **({"maxRowsPerFile": max_rows_per_file} if max_rows_per_file else {})}
    if seed is not None:
        spec["seed"] = seed
    job = parse_job(doc, source=uri)
    if issubclass(algorithm_class(job.spec.algorithm), OfflineAlgorithm):
        raise ValueError(
            f"{uri} is an offline {job.spec.algorithm} checkpoint: it has no runner policy to sample"
        )
    if job.spec.multi_agent is not None:
        raise ValueError(
            f"{uri} is a multi-agent checkpoint: record writes one policy's experience (a multi-agent run "
            "records every agent's with spec.output)"
        )
    algo = build_single_agent(job, run_dir=Path("runs") / job.metadata.name)
    try:
        algo.load_checkpoint_files(loaded.files, where=loaded.info.uri)
        start, episodes = algo.timesteps, algo.episodes_total
        while algo.timesteps - start < steps:
            algo.sample()
    finally:
        algo.stop()
    writer = algo.writer
    assert isinstance(writer, ExperienceWriter)
    return {
        "checkpoint": loaded.info.uri,
        "output": writer.sink.uri,
        "rows": writer.rows_written,
        "files": writer.files_written,
        "episodes_finished": algo.episodes_total - episodes,
    }
