"""The checkpoint store against a real S3 API (a moto server on loopback), through boto3's own
endpoint resolution (AWS_ENDPOINT_URL) and default credential chain, as in a cluster."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import boto3
import pytest

from kuberl.checkpoint import (
    CheckpointError,
    CheckpointStore,
    CorruptCheckpointError,
    StoreUnavailableError,
    load_checkpoint,
    open_store,
)
from kuberl.checkpoint.s3 import S3CheckpointStore, is_transient
from kuberl.checkpoint.uri import parse_uri
from tests.fixtures.s3 import free_port

pytestmark = pytest.mark.integration

WARN = "skipping corrupt checkpoint"


def name(i: int) -> str:
    return f"checkpoint_{i:06d}"


def files_for(i: int) -> dict[str, bytes]:
    return {"state.pt": f"weights-{i}".encode() * 100, "policies/default/model.pt": bytes([i]) * (10 + i)}


def save(store: CheckpointStore, i: int) -> None:
    store.save(name(i), files_for(i), metadata={"iteration": i, "timesteps": 100 * i})


def split(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


def s3() -> Any:
    return boto3.session.Session().client("s3")  # AWS_ENDPOINT_URL from the s3_bucket fixture


def keys(uri: str) -> list[str]:
    bucket, prefix = split(uri)
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/")
    return sorted(o["Key"][len(prefix) + 1 :] for page in pages for o in page.get("Contents", []))


def put(uri: str, key: str, body: bytes) -> None:
    bucket, prefix = split(uri)
    s3().put_object(Bucket=bucket, Key=f"{prefix}/{key}", Body=body)


def get(uri: str, key: str) -> bytes:
    bucket, prefix = split(uri)
    return bytes(s3().get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"].read())


def test_round_trip(s3_bucket: str) -> None:
    store = open_store(s3_bucket + "/")
    assert store.uri == s3_bucket
    store.check_access()
    assert store.list() == []
    assert store.load_latest() is None

    save(store, 1)
    save(store, 2)
    assert keys(s3_bucket) == [
        f"{name(i)}/{f}" for i in (1, 2) for f in ("manifest.json", "policies/default/model.pt", "state.pt")
    ] + ["latest"]
    assert json.loads(get(s3_bucket, "latest"))["name"] == name(2)

    infos = store.list()
    assert [i.name for i in infos] == [name(1), name(2)]
    assert infos[1].uri == f"{s3_bucket}/{name(2)}"
    assert (infos[1].iteration, infos[1].timesteps) == (2, 200)
    loaded = store.load(infos[0].uri)
    assert loaded.files == files_for(1)
    latest = store.load_latest()
    assert latest is not None
    assert latest.files == files_for(2)
    assert load_checkpoint(f"{s3_bucket}/{name(1)}").info.name == name(1)
    assert load_checkpoint(s3_bucket).info.name == name(2)


def test_bucket_root_without_prefix(s3_bucket: str) -> None:
    bucket_uri = "s3://" + split(s3_bucket)[0]
    store = open_store(bucket_uri)
    save(store, 4)
    assert [i.uri for i in store.list()] == [f"{bucket_uri}/{name(4)}"]
    assert load_checkpoint(f"{bucket_uri}/{name(4)}").files == files_for(4)


def test_partial_and_corrupt_newest_fall_back(s3_bucket: str, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(s3_bucket)
    for i in (1, 2, 3):
        save(store, i)
    # 3: one flipped byte, same size.
    data = bytearray(get(s3_bucket, f"{name(3)}/state.pt"))
    data[5] ^= 0xFF
    put(s3_bucket, f"{name(3)}/state.pt", bytes(data))
    # 4: an interrupted save (files, no manifest).
    put(s3_bucket, f"{name(4)}/state.pt", b"half")

    assert [i.name for i in store.list()] == [name(1), name(2), name(3)]
    with pytest.raises(CorruptCheckpointError, match="sha256") as exc:
        store.load(name(3))
    assert "state.pt" in str(exc.value)
    with pytest.raises(CorruptCheckpointError, match="no manifest"):
        store.load(name(4))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        store.load(name(5))

    with caplog.at_level(logging.WARNING, logger="kuberl.checkpoint"):
        latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(2)
    messages = [r.getMessage() for r in caplog.records if WARN in r.getMessage()]
    assert any(name(3) in m for m in messages), messages
    assert any(name(4) in m for m in messages), messages

    # Truncation of the next one, and a `latest` pointer at a deleted checkpoint.
    put(s3_bucket, f"{name(2)}/state.pt", files_for(2)["state.pt"][:-1])
    put(s3_bucket, "latest", json.dumps({"name": name(9)}).encode())
    latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(1)


def test_retention(s3_bucket: str) -> None:
    store = open_store(s3_bucket)
    for i in range(1, 6):
        save(store, i)
    assert store.prune(keep=2) == [name(1), name(2), name(3)]
    assert [i.name for i in store.list()] == [name(4), name(5)]
    assert not [k for k in keys(s3_bucket) if k.startswith((name(1), name(2), name(3)))]
    latest = store.load_latest()
    assert latest is not None
    assert latest.info.name == name(5)


def test_stale_partial_is_pruned(s3_bucket: str) -> None:
    store = open_store(s3_bucket)
    put(s3_bucket, "checkpoint_000000/state.pt", b"half")
    time.sleep(1.1)  # S3 LastModified has 1 s resolution
    save(store, 1)
    assert store.prune(keep=3) == ["checkpoint_000000"]
    assert not [k for k in keys(s3_bucket) if k.startswith("checkpoint_000000")]


def test_listing_and_deletion_paginate(s3_bucket: str) -> None:
    calls: list[str] = []
    client = boto3.session.Session().client("s3")
    client.meta.events.register("before-call.s3.ListObjectsV2", lambda **kw: calls.append(kw["model"].name))
    store = S3CheckpointStore(parse_uri(s3_bucket), client=client, page_size=4)
    many = {f"part_{j:02d}.bin": bytes([j]) * 3 for j in range(9)}
    for i in range(1, 5):
        store.save(name(i), many, metadata={"iteration": i, "timesteps": i})
    assert len(keys(s3_bucket)) == 4 * 10 + 1

    calls.clear()
    assert [i.name for i in store.list()] == [name(i) for i in range(1, 5)]
    assert len(calls) >= 11  # 41 keys in pages of 4

    assert store.prune(keep=1) == [name(1), name(2), name(3)]
    assert sorted(keys(s3_bucket)) == sorted(
        [f"{name(4)}/{f}" for f in [*many, "manifest.json"]] + ["latest"]
    )
    assert store.load(name(4)).files == many


def test_check_access_missing_bucket(s3_bucket: str) -> None:
    uri = "s3://kuberl-no-such-bucket-x/prefix"
    start = time.monotonic()
    with pytest.raises(CheckpointError) as exc:
        open_store(uri).check_access()
    assert time.monotonic() - start < 10
    assert uri in str(exc.value)
    assert "does not exist" in str(exc.value)
    assert not isinstance(exc.value, StoreUnavailableError)  # retrying cannot create the bucket


def test_check_access_unreachable_endpoint(s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError) as exc:  # an endpoint that may come back: retry later
        open_store(s3_bucket).check_access()
    assert time.monotonic() - start < 10
    assert s3_bucket in str(exc.value)
    assert "unreachable" in str(exc.value)
    assert endpoint in str(exc.value)


def test_check_access_without_credentials(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="credentials") as exc:
        open_store(s3_bucket).check_access()
    assert time.monotonic() - start < 10
    assert s3_bucket in str(exc.value)


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("SlowDown", 503, True),
        ("InternalError", 500, True),
        ("ServiceUnavailable", 503, True),
        ("RequestTimeout", 400, True),
        ("NoSuchBucket", 404, False),
        ("AccessDenied", 403, False),
        ("InvalidAccessKeyId", 403, False),
    ],
)
def test_which_s3_answers_are_worth_a_retry(code: str, status: int, transient: bool) -> None:
    from botocore.exceptions import ClientError

    err = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "HeadBucket")
    assert is_transient(err) is transient
