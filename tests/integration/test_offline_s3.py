"""spec.output and spec.input against a real S3 API (a moto server on loopback): the writer PUTs whole
Parquet files, and the Ray Data reader lists and reads them through pyarrow's S3 filesystem with the
endpoint and credentials boto3 resolves (AWS_ENDPOINT_URL), as in a cluster with MinIO."""

from __future__ import annotations

from pathlib import Path

import boto3
import numpy as np
import pytest

from kuberl.build import build_algorithm
from kuberl.core.offline.reader import OfflineData, resolve_files
from kuberl.core.offline.schema import C
from kuberl.spec import SpecError
from kuberl.spec.offline import InputSpec

pytestmark = pytest.mark.integration


def test_record_to_s3_and_read_back(tmp_path: Path, s3_bucket: str) -> None:
    doc = {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "ppo-offline-s3"},
        "spec": {
            "algorithm": "PPO",
            "env": "CartPole-v1",
            "seed": 1,
            "runDir": str(tmp_path),
            "resources": {"envRunners": 0, "envsPerRunner": 4},
            "config": {"trainBatchSize": 256, "minibatchSize": 64, "model": {"fcnet_hiddens": [16]}},
            "output": {"uri": f"{s3_bucket}/data", "maxRowsPerFile": 400, "compression": "snappy"},
        },
    }
    algo = build_algorithm(doc)
    try:
        for _ in range(4):
            algo.sample()
    finally:
        algo.stop()
    assert algo.writer is not None
    rows = algo.writer.rows_written
    assert rows == 4 * 64 * 4

    bucket, _, prefix = s3_bucket.removeprefix("s3://").partition("/")
    listing = boto3.session.Session().client("s3").list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/")
    keys = [o["Key"] for o in listing["Contents"]]
    assert len(keys) == algo.writer.files_written >= 2
    assert all(k.rsplit("/", 1)[1].startswith("part-") and k.endswith(".parquet") for k in keys)

    reader = OfflineData(
        InputSpec(uris=[f"{s3_bucket}/data/part-*.parquet"], num_readers=2),
        columns=(C.OBS, C.ACTIONS, C.REWARDS),
        seed=0,
    )
    assert len(reader.files) == len(keys)
    assert reader.dataset.count() == rows
    batch = reader.next_batch(128)
    assert batch[C.OBS].shape == (128, 4)
    assert np.all(batch[C.REWARDS] == 1.0)
    episodes = reader.episodes(3, (C.REWARDS,))
    assert [float(e[C.REWARDS].sum()) for e in episodes] == [float(len(e[C.T])) for e in episodes]
    assert all(float(e[C.REWARDS].sum()) in algo.returns for e in episodes)


def test_missing_s3_data_is_a_spec_error(s3_bucket: str) -> None:
    with pytest.raises(SpecError, match=r"names no \.parquet files") as err:
        resolve_files([f"{s3_bucket}/nothing-here"])
    assert err.value.first_path == "spec.input.uris"
