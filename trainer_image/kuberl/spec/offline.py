"""Offline data: `spec.output` records experience as Parquet, `spec.input` reads it back for offline RL.

The names follow RLlib's (`output`, `input_`, `output_max_rows_per_file`, `input_read_method_kwargs`)
where they exist. Both take a local directory, `file:///dir` or `s3://bucket/prefix`; S3 credentials
and endpoint come from the same place as the checkpoint store's (the AWS chain: AWS_ACCESS_KEY_ID …,
AWS_ENDPOINT_URL; on Kubernetes the `checkpoint.credentials` Secret's variables are in the pod).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator

from kuberl.spec.base import WireModel

_S3 = re.compile(r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/.*)?$")
# Characters a glob may use beyond a path's; anything else after a scheme is rejected.
_GLOB = re.compile(r"[*?\[]")


def check_data_uri(v: str, *, allow_glob: bool) -> str:
    """A local path, file:///path or s3://bucket[/prefix]; a clear reason otherwise."""
    v = v.strip()
    if not v:
        raise ValueError("empty location: use a local directory, file:///path or s3://bucket/prefix")
    if "://" in v and not v.startswith(("s3://", "file://")):
        raise ValueError(f"unsupported scheme in {v!r}: use s3://bucket/prefix, file:///path or a plain path")
    if v.startswith("s3://") and not _S3.match(v):
        raise ValueError(
            f"{v!r} is not a valid S3 URI: expected s3://bucket[/prefix] with a DNS-style bucket"
        )
    if v.startswith("file://") and not v.startswith("file:///"):
        raise ValueError(f"{v!r} is not a valid file URI: expected file:///absolute/path")
    if not allow_glob and _GLOB.search(v):
        raise ValueError(f"{v!r} contains glob characters; an output location must be one directory")
    return v


class OutputSpec(WireModel):
    """Write every transition the env runners sample as Parquet (see docs/offline.md for the schema)."""

    uri: str = Field(
        ...,
        description=(
            "Where to write: a local directory, file:///dir or s3://bucket/prefix. Files are named "
            "part-<run>-<n>.parquet and appear atomically (temp name then rename; one PUT on S3)."
        ),
    )
    max_rows_per_file: Annotated[int, Field(ge=1)] = Field(
        10_000,
        validation_alias=AliasChoices(
            "maxRowsPerFile", "max_rows_per_file", "output_max_rows_per_file", "outputMaxRowsPerFile"
        ),
        description=(
            "A file is written once this many rows of finished episodes are buffered (episodes are never "
            "split across files); the rest is written when training stops."
        ),
    )
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field(
        "zstd", description="Parquet compression codec."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return check_data_uri(v, allow_glob=False)


class InputSpec(WireModel):
    """Read recorded experience with Ray Data for the offline algorithms (BC, MARWIL, CQL)."""

    uris: list[str] = Field(
        ...,
        min_length=1,
        description=(
            "Parquet files or directories (local, file:// or s3://), globs allowed in the last path "
            "segments (e.g. s3://bucket/data/*.parquet). Directories are read recursively."
        ),
    )
    num_readers: Annotated[int, Field(ge=1)] = Field(
        2,
        validation_alias=AliasChoices("numReaders", "num_readers", "concurrency"),
        description="Ray Data read tasks run in parallel (Ray Data's `concurrency` of read_parquet).",
    )
    shuffle_buffer_size: Annotated[int, Field(ge=0)] = Field(
        10_000,
        validation_alias=AliasChoices(
            "shuffleBufferSize", "shuffle_buffer_size", "local_shuffle_buffer_size"
        ),
        description="Rows in the local shuffle buffer that training minibatches are drawn from (0: no shuffle).",
    )
    cache: bool = Field(
        True,
        description=(
            "Materialize the dataset in Ray's object store after the first read (spilled to local disk when "
            "larger than memory), so later epochs do not re-read the files; false streams every epoch."
        ),
    )
    ope_episodes: Annotated[int, Field(ge=0)] = Field(
        100,
        description=(
            "Logged episodes used for off-policy estimation (importance sampling and weighted IS of the "
            "trained policy) at every evaluation; 0 turns it off. Needs the `action_logp` column."
        ),
    )

    @field_validator("uris")
    @classmethod
    def _valid(cls, v: list[str]) -> list[str]:
        return [check_data_uri(u, allow_glob=True) for u in v]
