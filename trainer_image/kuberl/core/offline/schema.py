"""The on-disk format of recorded experience: one Parquet row per transition.

Columns are constants (as kuberl.core.sample_batch.Columns) and the Arrow schema is built from the
spaces, so the writer, the reader and docs/offline.md agree on one definition.
"""

from __future__ import annotations

from typing import Any, Final

import gymnasium as gym
import numpy as np
import pyarrow as pa

from kuberl.core.models import obs_dim

#: Written into the Parquet key-value metadata; a reader refuses a newer major version.
FORMAT_VERSION: Final = "1"
FORMAT_KEY: Final = b"kuberl.offline.format"


class OfflineColumns:
    OBS: Final = "obs"
    ACTIONS: Final = "actions"
    REWARDS: Final = "rewards"
    TERMINATEDS: Final = "terminateds"
    TRUNCATEDS: Final = "truncateds"
    NEXT_OBS: Final = "next_obs"
    EPISODE_ID: Final = "episode_id"
    T: Final = "t"
    ACTION_LOGP: Final = "action_logp"
    # Multi-agent recordings only (after the columns above): who acted, with which policy, in which env
    # episode. `episode_id` is then one agent's episode, so returns-to-go and OPE stay per agent.
    AGENT_ID: Final = "agent_id"
    POLICY_ID: Final = "policy_id"
    ENV_EPISODE_ID: Final = "env_episode_id"
    # Added by the reader for MARWIL (never stored): the discounted reward-to-go within the episode.
    RETURNS_TO_GO: Final = "returns_to_go"


C = OfflineColumns


def vector_type(width: int) -> pa.DataType:
    """A fixed-size list of float32 whose child is named as Parquet names it ("element"), so the schema
    read back from a file equals the one written."""
    return pa.list_(pa.field("element", pa.float32(), nullable=False), width)


def action_type(space: gym.Space[Any]) -> tuple[pa.DataType, int | None]:
    """(Arrow type, vector size or None) of the actions column."""
    if isinstance(space, gym.spaces.Discrete):
        return pa.int64(), None
    if isinstance(space, gym.spaces.Box):
        size = int(np.prod(space.shape))
        return vector_type(size), size
    raise TypeError(f"action space {space} cannot be recorded (Discrete and Box can)")


def arrow_schema(
    obs_space: gym.Space[Any], action_space: gym.Space[Any], *, multi_agent: bool = False
) -> pa.Schema:
    """The file schema for these spaces. Observations are the flattened float32 vectors the policy
    sees (gymnasium.spaces.flatten order), fixed-size lists so every row has the same width.
    `multi_agent` appends agent_id, policy_id and env_episode_id."""
    n_obs = obs_dim(obs_space)
    act_type, _ = action_type(action_space)
    agent_fields = (
        [
            pa.field(C.AGENT_ID, pa.string(), nullable=False),
            pa.field(C.POLICY_ID, pa.string(), nullable=False),
            pa.field(C.ENV_EPISODE_ID, pa.int64(), nullable=False),
        ]
        if multi_agent
        else []
    )
    return pa.schema(
        [
            pa.field(C.EPISODE_ID, pa.int64(), nullable=False),
            pa.field(C.T, pa.int32(), nullable=False),
            pa.field(C.OBS, vector_type(n_obs), nullable=False),
            pa.field(C.ACTIONS, act_type, nullable=False),
            pa.field(C.REWARDS, pa.float32(), nullable=False),
            pa.field(C.TERMINATEDS, pa.bool_(), nullable=False),
            pa.field(C.TRUNCATEDS, pa.bool_(), nullable=False),
            pa.field(C.NEXT_OBS, vector_type(n_obs), nullable=False),
            pa.field(C.ACTION_LOGP, pa.float32(), nullable=True),
            *agent_fields,
        ],
        metadata={FORMAT_KEY: FORMAT_VERSION.encode()},
    )


def vector_column(values: np.ndarray, width: int) -> pa.FixedSizeListArray:
    """[n, width] float32 → a fixed-size-list array without copying row by row."""
    flat = pa.array(np.ascontiguousarray(values, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, type=vector_type(width))


def column_to_numpy(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow column as numpy; fixed-size lists become [n, width] arrays, nulls become NaN."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_fixed_size_list(column.type):
        width = column.type.list_size
        return np.array(column.flatten().to_numpy(zero_copy_only=False)).reshape(len(column), width)
    if column.null_count:
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float32)
    return np.array(column.to_numpy(zero_copy_only=False))  # writable: torch wraps it without copying


def table_to_numpy(table: pa.Table, columns: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    names = columns if columns is not None else tuple(table.column_names)
    return {name: column_to_numpy(table.column(name)) for name in names}
