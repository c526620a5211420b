"""A local-mode client's copy of the server's policy: the same kuberl.core.policy runner policy, built
from the spaces and model config the server publishes at /v1/policy."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kuberl.core.models import flatten_obs
from kuberl.core.policy import ActorCriticPolicy
from kuberl.core.preprocess import batch_of_one
from kuberl.core.sample_batch import Columns
from kuberl.external.spaces import action_to_json, space_from_json
from kuberl.spec.algorithms import ModelConfig


class LocalPolicy:
    def __init__(self, obs_space: Any, action_space: Any, model: ModelConfig, *, seed: int | None) -> None:
        torch.set_num_threads(1)  # a simulator process: one small forward pass per step
        self.obs_space = obs_space
        self.action_space = action_space
        self.policy = ActorCriticPolicy(obs_space, action_space, model, {})
        self.gen = torch.Generator()
        if seed is None:
            self.gen.seed()
        else:
            self.gen.manual_seed(seed)

    @classmethod
    def from_document(cls, doc: dict[str, Any], *, seed: int | None = None) -> LocalPolicy:
        policy = cls(
            space_from_json(doc["observation_space"]),
            space_from_json(doc["action_space"]),
            ModelConfig.model_validate(doc["model"]),
            seed=seed,
        )
        policy.load(doc)
        return policy

    def load(self, doc: dict[str, Any]) -> None:
        state = {
            k: torch.tensor(np.asarray(t["data"], dtype=np.float32).reshape(t["shape"]))
            for k, t in doc["weights"].items()
        }
        self.policy.module.load_state_dict(state)

    def act(self, obs: Any, *, explore: bool) -> tuple[Any, float, list[float]]:
        """(action as JSON, its log-prob, the distribution inputs) for one observation."""
        flat = flatten_obs(self.obs_space, batch_of_one(self.obs_space, obs))
        with torch.inference_mode():
            out = self.policy.act(torch.from_numpy(flat), explore=explore, generator=self.gen)
        action = out[Columns.ACTIONS][0].numpy()
        return (
            action_to_json(self.action_space, action),
            float(out[Columns.ACTION_LOGP][0]),
            out[Columns.ACTION_DIST_INPUTS][0].tolist(),
        )
