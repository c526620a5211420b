"""`kuberl serve --checkpoint CKPT`: answer actions over HTTP from a checkpoint, without training and
without Ray (docs/export.md, "Serving it").

The policy server of spec.external (kuberl.external.server) speaks an episode protocol that trains on
what clients report; an inference-only server has nothing to learn from, so it answers stateless
requests instead: POST /v1/actions with a batch of observations (and, for an LSTM policy, the state
the previous call returned) gives the batch's actions, as `Algorithm.compute_actions` computes them.
Bad bodies get a 400 naming the reason and the server stays up; uvicorn exits cleanly on SIGTERM.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
from typing import Annotated, Any

import numpy as np
import torch
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from kuberl.algorithms.families.value_factorization import ValueFactorizationAlgorithm
from kuberl.core.recurrent import RecurrentActorCritic, RecurrentState
from kuberl.export import inference_algorithm
from kuberl.external.spaces import InvalidValueError, space_to_json, validate_observation
from kuberl.spec import SpecError
from kuberl.spec.external import TOKEN_ENV

MAX_BATCH = 4096  # observations per request: bounds the memory one request can take
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LstmState(_Body):
    h: list[list[float]] = Field(..., description="[B, lstmCellSize], as the previous answer gave it.")
    c: list[list[float]] = Field(..., description="[B, lstmCellSize], as the previous answer gave it.")


class ActionsRequest(_Body):
    observations: list[Any] = Field(
        ..., min_length=1, max_length=MAX_BATCH, description="A batch of observations of the env's space."
    )
    state: LstmState | None = Field(None, description="LSTM policies: null (zeros) at an episode's start.")
    explore: bool = Field(False, description="Sample from the policy (true) or act greedily (false).")


class ActionsResponse(_Body):
    actions: list[Any] = Field(..., description="One action per observation, as the env takes it.")
    state: LstmState | None = Field(None, description="LSTM policies: the state to send with the next step.")


class InferencePolicy:
    """A checkpoint's policy in this process; act() is serialised (one torch generator, one module)."""

    def __init__(self, uri: str, *, policy_id: str | None = None) -> None:
        self.algo, self.policy = inference_algorithm(uri, policy_id=policy_id)
        if isinstance(self.policy, ValueFactorizationAlgorithm):
            # Its observations are joint ones (one per agent) and its recurrent state is per agent:
            # not what /v1/actions takes (one observation of the policy's space per row).
            self.algo.stop()
            raise SpecError(
                [
                    (
                        "--checkpoint",
                        f"a {self.policy.name} team acts on joint observations, which this server does "
                        "not take yet: serve its agent network from a kuberl export file (docs/export.md)",
                    )
                ]
            )
        module = self.policy.policy_module()
        self.recurrent = isinstance(module, RecurrentActorCritic)
        cfg = self.policy.config.model
        if self.recurrent and (cfg.lstm_use_prev_action or cfg.lstm_use_prev_reward):
            self.algo.stop()
            raise SpecError(
                [("spec.config.model", "lstmUsePrevAction/lstmUsePrevReward policies cannot be served yet")]
            )
        self.cell = int(module.cell_size) if isinstance(module, RecurrentActorCritic) else 0
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {
            "algorithm": self.algo.name,
            "iteration": int(self.algo.iteration),
            "observation_space": space_to_json(self.policy.obs_space),
            "action_space": space_to_json(self.policy.action_space),
            "recurrent": self.recurrent,
            **({"lstm_cell_size": self.cell} if self.recurrent else {}),
        }

    def act(self, req: ActionsRequest) -> ActionsResponse:
        obs = np.stack([self._observation(i, o) for i, o in enumerate(req.observations)])
        with self._lock:
            if not self.recurrent:
                if req.state is not None:
                    raise InvalidValueError("state: this policy is not recurrent; send no state")
                actions = self.policy.compute_actions(obs, explore=req.explore)
                return ActionsResponse(actions=np.asarray(actions).tolist())
            state = self._state(req.state, len(obs))
            actions, nxt = self.policy.compute_actions_with_state(obs, state, explore=req.explore)
        assert isinstance(nxt, RecurrentState), "an LSTM policy returns an LSTM state"
        out = LstmState(h=nxt.h.detach().cpu().tolist(), c=nxt.c.detach().cpu().tolist())
        return ActionsResponse(actions=np.asarray(actions).tolist(), state=out)

    def _observation(self, i: int, value: Any) -> np.ndarray:
        try:
            return validate_observation(self.policy.obs_space, value)
        except InvalidValueError as exc:
            raise InvalidValueError(f"observations[{i}]: {exc}") from None

    def _state(self, state: LstmState | None, batch: int) -> RecurrentState:
        initial = self.policy.initial_state(batch)
        # _state is called for LSTM policies only
        assert isinstance(initial, RecurrentState), "an LSTM policy has an LSTM state"
        if state is None:
            return initial
        h, c = (np.asarray(x, dtype=np.float32) for x in (state.h, state.c))
        for name, arr in (("h", h), ("c", c)):
            if arr.shape != (batch, self.cell):
                raise InvalidValueError(
                    f"state.{name} has shape {list(arr.shape)}, expected [{batch}, {self.cell}] "
                    "(one row per observation, lstmCellSize columns)"
                )
            if not np.all(np.isfinite(arr)):
                raise InvalidValueError(f"state.{name} holds a number beyond the float32 range")
        return RecurrentState(
            torch.from_numpy(h), torch.from_numpy(c), initial.prev_actions, initial.prev_rewards
        )

    def stop(self) -> None:
        self.algo.stop()


_BEARER = HTTPBearer(auto_error=False, description="KUBERL_POLICY_SERVER_TOKEN, when the server has one.")


def create_inference_app(policy: InferencePolicy, *, token: str | None) -> FastAPI:
    app = FastAPI(title="kuberl inference server", version="1", docs_url=None, redoc_url=None)
    expected = token.encode() if token else None

    async def authorize(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if expected is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"}
            )

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        reasons = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()]
        return JSONResponse({"detail": "; ".join(reasons)}, status_code=400)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model", dependencies=[Depends(authorize)])
    async def model() -> dict[str, Any]:
        """The checkpoint's algorithm, iteration and spaces (what /v1/actions takes and returns)."""
        return policy.describe()

    # A plain def: FastAPI runs it in its thread pool, so a forward pass does not block the event loop.
    @app.post("/v1/actions", response_model=ActionsResponse, dependencies=[Depends(authorize)])
    def actions(body: ActionsRequest) -> ActionsResponse:
        """The policy's actions for a batch of observations (greedy unless explore)."""
        try:
            return policy.act(body)
        except InvalidValueError as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None

    return app


def serve_checkpoint(
    uri: str, *, host: str, port: int, policy_id: str | None = None, on_ready: Any = None
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn's handlers end the loop; then the policy is released)."""
    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if token is None and host not in LOOPBACK:
        raise SpecError([("--host", f"serving on {host} needs a bearer token: set {TOKEN_ENV}")])
    policy = InferencePolicy(uri, policy_id=policy_id)
    try:
        config = uvicorn.Config(
            create_inference_app(policy, token=token),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
        )
        server = uvicorn.Server(config)
        if on_ready is not None:
            _announce_when_started(server, on_ready)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to the handler it found: with the
        # default one the process would die of the signal. This one lets it return (exit status 0).
        previous = signal.signal(signal.SIGTERM, lambda *_: None)
        try:
            server.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        policy.stop()


def _announce_when_started(server: uvicorn.Server, on_ready: Any) -> None:
    """Call on_ready(url) once uvicorn listens (port 0: the port the OS picked)."""

    def wait() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.02)
        sockets = [s for srv in server.servers for s in srv.sockets]
        if sockets:
            host, port = sockets[0].getsockname()[:2]
            on_ready(f"http://{host}:{port}")

    threading.Thread(target=wait, name="kuberl-inference-ready", daemon=True).start()
