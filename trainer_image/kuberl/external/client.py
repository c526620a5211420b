"""`kuberl.PolicyClient`: connect an external simulator to a kuberl policy server.

Two modes, as RLlib's PolicyClient:
- remote: every `get_action` is an HTTP request; the server's current policy acts. The reward logged
  since the last action rides along with the next request (one request per step instead of two).
- local: the client pulls the weights (`/v1/policy`), acts with its own CPU copy of the policy, and
  uploads the episode events in batches (`/v1/experience`), refreshing the weights when the server's
  version moved and `update_interval` seconds have passed. Needs torch; remote mode does not.

    client = PolicyClient("http://127.0.0.1:8900", token=..., inference_mode="remote")
    eid = client.start_episode()
    action = client.get_action(eid, obs)
    client.log_returns(eid, reward)
    client.end_episode(eid, obs, truncated=False)

What a client that fails keeps: used as a context manager (or with `close()` in a `finally`), an
exception in the simulator still sends everything it logged — local mode uploads its buffered events,
remote mode the rewards logged since the last request — and the server keeps the unfinished episode's
steps (closed as abandoned after `idleTimeoutSeconds`). An upload that could not connect keeps its
events for the next one. Lost at most: what was never sent when the process dies without closing
(local mode: up to `max_buffered_steps` actions and the events since the last upload; remote mode: the
reward since the last request), and an upload whose connection broke after it was sent (the server
may have applied it; re-sending could log steps twice).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any, Literal

import numpy as np
import urllib3

from kuberl.spec.external import TOKEN_ENV

log = logging.getLogger(__name__)


class PolicyServerUnavailable(ConnectionError):  # noqa: N818 (it reads as a state, like ConnectionRefused)
    """The server cannot be reached (it stopped, or never started): a simulator's cue to exit or retry.
    `sent` is False when no connection was made, so the request certainly never reached the server."""

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


class PolicyServerError(RuntimeError):
    """The server refused a request; `status` is the HTTP status and the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def _jsonable(x: Any) -> Any:
    return np.asarray(x).tolist() if isinstance(x, np.ndarray | np.generic | list | tuple) else x


class PolicyClient:
    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        inference_mode: Literal["remote", "local"] = "remote",
        update_interval: float = 5.0,
        max_buffered_steps: int = 256,
        timeout: float = 60.0,
        seed: int | None = None,
    ) -> None:
        """token: the job's bearer token (default: the KUBERL_POLICY_SERVER_TOKEN environment variable).
        update_interval: local mode, seconds between weight refreshes at most.
        max_buffered_steps: local mode, events are uploaded once this many actions are buffered (and at
        every episode end)."""
        if inference_mode not in ("remote", "local"):
            raise ValueError(f"inference_mode must be 'remote' or 'local', not {inference_mode!r}")
        token = token if token is not None else os.environ.get(TOKEN_ENV)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # urllib3 rather than httpx: a third of the CPU per request, and remote mode makes one per step.
        # Connection attempts are retried; a request already sent never is (it would log a step twice).
        self.http = urllib3.connection_from_url(
            address.rstrip("/"),
            maxsize=1,
            headers=headers,
            timeout=urllib3.Timeout(total=timeout),
            retries=urllib3.Retry(
                total=3, connect=3, read=0, status=0, other=0, redirect=0, backoff_factor=0.2
            ),
        )
        self.mode = inference_mode
        self.update_interval = update_interval
        self.max_buffered_steps = max_buffered_steps
        self._rewards: dict[str, float] = {}  # remote mode: reward not yet sent, per episode
        self._events: list[dict[str, Any]] = []
        self._buffered_steps = 0
        self._local: Any = None
        self._version = -1
        self._last_update = 0.0
        self._seed = seed
        if self.mode == "local":
            self.update_policy_weights()

    # -- HTTP --------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None) -> Any:
        try:
            r = self.http.urlopen(method, path, body=None if body is None else json.dumps(body))
        except urllib3.exceptions.HTTPError as exc:
            reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) else exc
            # No connection (refused or timed out, NewConnectionError included): nothing was sent.
            sent = not isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
            raise PolicyServerUnavailable(f"policy server unavailable: {exc}", sent=sent) from exc
        if r.status >= 400:
            try:
                detail = json.loads(r.data).get("detail", r.data.decode(errors="replace"))
            except ValueError:
                detail = r.data.decode(errors="replace")
            raise PolicyServerError(r.status, str(detail))
        return json.loads(r.data) if r.data else None

    # -- the verbs ---------------------------------------------------------------------------------
    def start_episode(self, episode_id: str | None = None, training_enabled: bool = True) -> str:
        if self.mode == "local":
            eid = episode_id or uuid.uuid4().hex
            self._events.append({"type": "start", "episode_id": eid, "training_enabled": training_enabled})
            return eid
        body = {"episode_id": episode_id, "training_enabled": training_enabled}
        new_id: str = self._call("POST", "/v1/episodes", body)["episode_id"]
        self._rewards[new_id] = 0.0
        return new_id

    def get_action(self, episode_id: str, observation: Any, *, explore: bool = True) -> Any:
        if self.mode == "local":
            action, logp, dist_inputs = self._local.act(np.asarray(observation), explore=explore)
            self._log_local(episode_id, observation, action, logp, dist_inputs)
            return action
        body: dict[str, Any] = {"observation": _jsonable(observation), "explore": explore}
        reward = self._rewards.get(episode_id, 0.0)
        if reward:
            body["reward"] = reward
        action = self._call("POST", f"/v1/episodes/{episode_id}/action", body)["action"]
        self._rewards[episode_id] = 0.0
        return action

    def log_action(self, episode_id: str, observation: Any, action: Any) -> None:
        """An action the simulator chose itself (a human, a scripted controller): trained on off-policy."""
        if self.mode == "local":
            self._log_local(episode_id, observation, action, None, None)
            return
        body: dict[str, Any] = {"observation": _jsonable(observation), "action": _jsonable(action)}
        reward = self._rewards.get(episode_id, 0.0)
        if reward:
            body["reward"] = reward
        self._call("POST", f"/v1/episodes/{episode_id}/logged-action", body)
        self._rewards[episode_id] = 0.0

    def log_returns(self, episode_id: str, reward: float, info: dict[str, Any] | None = None) -> None:
        if self.mode == "local":
            self._events.append({"type": "returns", "episode_id": episode_id, "reward": float(reward)})
        elif info is not None:
            self._call("POST", f"/v1/episodes/{episode_id}/returns", {"reward": float(reward), "info": info})
        else:  # sent with the next request of this episode
            self._rewards[episode_id] = self._rewards.get(episode_id, 0.0) + float(reward)

    def end_episode(self, episode_id: str, observation: Any, *, truncated: bool = False) -> None:
        if self.mode == "local":
            self._events.append(
                {
                    "type": "end",
                    "episode_id": episode_id,
                    "observation": _jsonable(observation),
                    "truncated": truncated,
                }
            )
            self.flush()
            return
        body: dict[str, Any] = {"observation": _jsonable(observation), "truncated": truncated}
        reward = self._rewards.pop(episode_id, 0.0)
        if reward:
            body["reward"] = reward
        self._call("POST", f"/v1/episodes/{episode_id}/end", body)

    # -- local mode --------------------------------------------------------------------------------
    def _log_local(
        self, episode_id: str, observation: Any, action: Any, logp: float | None, dist_inputs: Any
    ) -> None:
        event: dict[str, Any] = {
            "type": "action",
            "episode_id": episode_id,
            "observation": _jsonable(observation),
            "action": _jsonable(action),
        }
        if logp is not None:
            event["action_logp"] = logp
            event["action_dist_inputs"] = _jsonable(dist_inputs)
        self._events.append(event)
        self._buffered_steps += 1
        if self._buffered_steps >= self.max_buffered_steps:
            self.flush()

    def flush(self) -> None:
        """Upload buffered events (local mode), then refresh the weights if they are due."""
        reply = self._upload()
        if (
            reply is not None
            and reply["policy_version"] != self._version
            and time.monotonic() - self._last_update >= self.update_interval
        ):
            self.update_policy_weights()

    def _upload(self) -> Any:
        """POST the buffered events; the server's reply, or None when nothing was buffered. Events the
        server never received (no connection) stay buffered for the next upload."""
        if not self._events:
            return None
        events, self._events, self._buffered_steps = self._events, [], 0
        try:
            return self._call("POST", "/v1/experience", {"events": events})
        except PolicyServerUnavailable as exc:
            if not exc.sent:
                self._events = events + self._events
                self._buffered_steps = sum(e["type"] == "action" for e in self._events)
            raise

    def update_policy_weights(self) -> None:
        """Pull the server's current weights (local mode)."""
        from kuberl.external.local_policy import LocalPolicy

        doc = self._call("GET", "/v1/policy")
        if self._local is None:
            self._local = LocalPolicy.from_document(doc, seed=self._seed)
        else:
            self._local.load(doc)
        self._version = int(doc["version"])
        self._last_update = time.monotonic()

    @property
    def policy_version(self) -> int:
        return self._version

    def close(self) -> None:
        """Send what is logged and not yet sent (local mode: the buffered events; remote mode: rewards
        logged since an episode's last request), then close the connection."""
        try:
            if self.mode == "local":
                self._upload()
            else:
                for eid, reward in list(self._rewards.items()):
                    if reward:
                        try:
                            self._call("POST", f"/v1/episodes/{eid}/returns", {"reward": reward})
                        except PolicyServerError as exc:  # 404: the episode is gone (idle too long)
                            log.warning("reward of episode %s not sent: %s", eid, exc)
                    del self._rewards[eid]
        finally:
            self.http.close()

    def __enter__(self) -> PolicyClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
            return
        # The simulator failed: send what can be sent, without hiding its exception behind ours.
        try:
            self.close()
        except (PolicyServerError, PolicyServerUnavailable) as exc:
            log.warning("closing after %s: %s", exc_type.__name__, exc)
