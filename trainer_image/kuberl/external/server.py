"""The policy server: a FastAPI app (OpenAPI document at /openapi.json) run by uvicorn in a thread of
the trainer process.

Every route but /healthz needs `Authorization: Bearer <token>`, compared in constant time. Malformed
requests get a 4xx with the reason (422 for bodies that do not fit the schema or the env's spaces,
404 for unknown episodes, 409/429 for conflicts), never a 500. Concurrent `get_action` requests that
arrive in the same event-loop turn share one forward pass.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool

from kuberl.external.episodes import EpisodeError
from kuberl.external.guard import (
    GuardedHttpToolsProtocol,
    RequestGuard,
    install_accept_error_filter,
    observation_body_limit,
)
from kuberl.external.service import PolicyService
from kuberl.external.spaces import InvalidValueError, space_json_schema
from kuberl.spec import SpecError
from kuberl.spec.external import HOST_ENV, TOKEN_ENV, ExternalSpec

log = logging.getLogger(__name__)

API_PREFIX = "/v1"


def _no_parent_segments(value: str) -> str:
    if ".." in value:
        raise ValueError("an episode id must not contain '..'")
    return value


# Ids end up in URL paths and in recorded data: letters, digits and _ . : - only (review L9).
EpisodeId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="The episode's id: letters, digits, '_', '.', ':' and '-' (no '..').",
    ),
    AfterValidator(_no_parent_segments),
]
# Rewards and log-probs land in float32 columns: larger magnitudes would become infinities there.
F32_MAX = 3.4e38
Reward = Annotated[float, Field(allow_inf_nan=False, ge=-F32_MAX, le=F32_MAX)]
LogProb = Annotated[float, Field(allow_inf_nan=False, ge=-F32_MAX, le=F32_MAX)]
_OBS_DOC = "An observation of the env's observation space, as JSON (a number or nested lists of numbers)."


class _Body(BaseModel):
    # strict: "1" is not a reward and "yes" is not a boolean (review L8); JSON integers still fit floats.
    model_config = ConfigDict(extra="forbid", strict=True)


class StartEpisodeRequest(_Body):
    episode_id: EpisodeId | None = Field(None, description="Id to use; the server makes one when omitted.")
    training_enabled: bool = Field(True, description="Train on this episode's steps (false: act only).")


class StartEpisodeResponse(_Body):
    episode_id: str = Field(..., description="The new episode's id.")


class GetActionRequest(_Body):
    observation: Any = Field(..., description=_OBS_DOC)
    reward: Reward | None = Field(
        None, description="Reward since the previous action (saves a separate log_returns call)."
    )
    explore: bool = Field(True, description="Sample from the policy (true) or act greedily (false).")


class GetActionResponse(_Body):
    action: Any = Field(..., description="The action to apply: an integer (Discrete) or a list (Box).")


class LogActionRequest(_Body):
    observation: Any = Field(..., description=_OBS_DOC)
    action: Any = Field(..., description="The action the client took at this observation.")
    action_logp: LogProb | None = Field(
        None,
        description="Log-probability of the action under the client's policy (local mode).",
    )
    action_dist_inputs: list[float] | None = Field(
        None, description="The client policy's distribution inputs at this observation (local mode)."
    )
    reward: Reward | None = Field(None, description="Reward since the previous action.")


class LogReturnsRequest(_Body):
    reward: Reward = Field(..., description="Reward received since the last action (calls add up).")
    info: dict[str, Any] | None = Field(None, description="Extra information; accepted and not stored.")


class EndEpisodeRequest(_Body):
    observation: Any = Field(..., description="The last observation. " + _OBS_DOC)
    truncated: bool = Field(
        False,
        description="The episode was cut (e.g. a time limit), not terminated: its value is bootstrapped.",
    )
    reward: Reward | None = Field(None, description="Reward since the previous action.")


class EndEpisodeResponse(_Body):
    episode_return: float = Field(..., description="Sum of the episode's rewards.")
    length: int = Field(..., description="Actions taken in the episode.")


class StartEvent(_Body):
    type: Literal["start"]
    episode_id: EpisodeId
    training_enabled: bool = Field(True, description="Train on this episode's steps.")


class ActionEvent(_Body):
    type: Literal["action"]
    episode_id: EpisodeId
    observation: Any = Field(..., description=_OBS_DOC)
    action: Any = Field(..., description="The action taken.")
    action_logp: LogProb | None = Field(None, description="Behaviour log-probability.")
    action_dist_inputs: list[float] | None = Field(None, description="Behaviour distribution inputs.")


class ReturnsEvent(_Body):
    type: Literal["returns"]
    episode_id: EpisodeId
    reward: Reward = Field(..., description="Reward since the last action.")


class EndEvent(_Body):
    type: Literal["end"]
    episode_id: EpisodeId
    observation: Any = Field(..., description="The last observation.")
    truncated: bool = Field(False, description="Cut by a time limit rather than terminated.")


Event = Annotated[StartEvent | ActionEvent | ReturnsEvent | EndEvent, Field(discriminator="type")]


#: Events per /v1/experience request (the body is also capped at guard.EXPERIENCE_MAX_BYTES).
MAX_EVENTS = 100_000
#: Events validated per step of the worker thread: each step holds the GIL only briefly.
EVENT_CHUNK = 500


class ExperienceRequest(_Body):
    events: list[Event] = Field(..., max_length=MAX_EVENTS, description="Episode events, applied in order.")


_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event], config=ConfigDict(strict=True))


class ExperienceResponse(_Body):
    accepted: int = Field(..., description="Events applied.")
    policy_version: int = Field(
        ..., description="Version of the server's weights (pull /v1/policy when it moved)."
    )


class TensorJSON(_Body):
    shape: list[int]
    data: list[float]


class PolicyResponse(_Body):
    version: int = Field(..., description="Increases with every weight update.")
    observation_space: dict[str, Any]
    action_space: dict[str, Any]
    model: dict[str, Any] = Field(..., description="The model config (kuberl.spec.algorithms.ModelConfig).")
    weights: dict[str, TensorJSON]


class Health(_Body):
    status: str
    policy_version: int


# Module level: route signatures are resolved from the module's globals (postponed annotations).
_BEARER = HTTPBearer(auto_error=False, description="The job's policy-server token.")


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"example": {"detail": "reason"}}}}


_ERRORS: dict[int | str, dict[str, Any]] = {401: _err("Missing or wrong bearer token.")}
_EPISODE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: _err("No such open episode."),
    422: _err("The body does not fit the schema or the env's spaces."),
}


class _ActionBatcher:
    """Collects the get_action requests parsed in one event-loop turn and answers them with one
    forward pass (call_soon runs after every callback already ready)."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self.queue: list[tuple[tuple[str, Any, bool], asyncio.Future[Any]]] = []

    async def submit(self, episode_id: str, obs: Any, explore: bool) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if not self.queue:
            loop.call_soon(self._flush)
        self.queue.append(((episode_id, obs, explore), fut))
        return await fut

    def _flush(self) -> None:
        batch, self.queue = self.queue, []
        try:
            results = self.service.get_actions([req for req, _ in batch])
        except Exception as exc:  # a bug: every waiting request gets it (and answers 500)
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), res in zip(batch, results, strict=True):
            if not fut.done():
                fut.set_result(res)


def create_app(service: PolicyService, *, token: str | None) -> FastAPI:  # noqa: C901 (routes as closures)
    """The HTTP API over `service`. token None serves without authentication (spec.external.insecure)."""
    app = FastAPI(
        title="kuberl policy server",
        version="1",
        # No Swagger/ReDoc pages: they load scripts from a CDN (air-gapped clusters, third-party code)
        # and were served without the token (review L10). /openapi.json is the API description.
        docs_url=None,
        redoc_url=None,
        description=(
            "Drive kuberl training from external simulators. Remote mode: start_episode, get_action, "
            "log_returns, end_episode. Local mode: pull /v1/policy, act locally, POST /v1/experience."
        ),
    )
    expected = token.encode() if token is not None else None
    batcher = _ActionBatcher(service)

    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request.
    async def authorize(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if expected is None:
            return
        if creds is None or not secrets.compare_digest(creds.credentials.encode(), expected):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing or wrong bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )

    auth = [Depends(authorize)]

    @app.get("/healthz", response_model=Health, tags=["health"])
    async def healthz() -> Health:
        """Liveness; needs no token."""
        return Health(status="ok", policy_version=service.version)

    @app.post(
        f"{API_PREFIX}/episodes",
        response_model=StartEpisodeResponse,
        status_code=201,
        dependencies=auth,
        responses={**_ERRORS, 409: _err("Episode id already open."), 429: _err("Too many open episodes.")},
    )
    async def start_episode(body: StartEpisodeRequest) -> StartEpisodeResponse:
        """start_episode: open an episode."""
        return StartEpisodeResponse(episode_id=service.start_episode(body.episode_id, body.training_enabled))

    @app.post(
        f"{API_PREFIX}/episodes/{{episode_id}}/action",
        response_model=GetActionResponse,
        dependencies=auth,
        responses=_EPISODE_ERRORS,
    )
    async def get_action(episode_id: str, body: GetActionRequest) -> GetActionResponse:
        """get_action: the server's policy acts at this observation (remote mode)."""
        obs = service.flat_obs(body.observation)
        if body.reward is not None:
            service.log_returns(episode_id, body.reward)
        result = await batcher.submit(episode_id, obs, body.explore)
        if isinstance(result, EpisodeError):
            raise result
        return GetActionResponse(action=result)

    @app.post(
        f"{API_PREFIX}/episodes/{{episode_id}}/logged-action",
        status_code=204,
        dependencies=auth,
        responses=_EPISODE_ERRORS,
    )
    async def log_action(episode_id: str, body: LogActionRequest) -> Response:
        """log_action: record an action the client chose itself."""
        logged = service.logged_action(
            body.observation, body.action, body.action_logp, body.action_dist_inputs
        )
        if body.reward is not None:
            service.log_returns(episode_id, body.reward)
        service.log_action(episode_id, logged)
        return Response(status_code=204)

    @app.post(
        f"{API_PREFIX}/episodes/{{episode_id}}/returns",
        status_code=204,
        dependencies=auth,
        responses=_EPISODE_ERRORS,
    )
    async def log_returns(episode_id: str, body: LogReturnsRequest) -> Response:
        """log_returns: reward received since the last action."""
        service.log_returns(episode_id, body.reward)
        return Response(status_code=204)

    @app.post(
        f"{API_PREFIX}/episodes/{{episode_id}}/end",
        response_model=EndEpisodeResponse,
        dependencies=auth,
        responses=_EPISODE_ERRORS,
    )
    async def end_episode(episode_id: str, body: EndEpisodeRequest) -> EndEpisodeResponse:
        """end_episode: the episode ended at this observation."""
        obs = service.flat_obs(body.observation)
        if body.reward is not None:
            service.log_returns(episode_id, body.reward)
        ret, length = service.end_episode(episode_id, obs, body.truncated)
        return EndEpisodeResponse(episode_return=ret, length=length)

    @app.get(f"{API_PREFIX}/policy", response_model=PolicyResponse, dependencies=auth, responses=_ERRORS)
    async def get_policy() -> dict[str, Any]:
        """Weights, model config and spaces, for local-mode clients."""
        return service.policy_document()

    @app.post(
        f"{API_PREFIX}/experience",
        response_model=ExperienceResponse,
        dependencies=auth,
        responses={
            **_EPISODE_ERRORS,
            409: _err("An event conflicts with its episode's state."),
            413: _err("The body is larger than the route's limit."),
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ExperienceRequest"}}
                },
            }
        },
    )
    async def post_experience(request: Request) -> ExperienceResponse:
        """Local mode: a batch of episode events recorded by the client, applied in order."""
        raw = await request.body()  # bounded by RequestGuard before it is read
        # Parsing and validating up to MAX_EVENTS events takes seconds: off the event loop, in chunks,
        # so other clients (and /healthz) are answered meanwhile (review M9).
        accepted = await run_in_threadpool(_apply_experience, service, raw)
        return ExperienceResponse(accepted=accepted, policy_version=service.version)

    # The service's refusals, mapped to HTTP in one place so the routes read straight through.
    @app.exception_handler(EpisodeError)
    async def _episode_error(request: Request, exc: EpisodeError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.exception_handler(InvalidValueError)
    async def _invalid_value(request: Request, exc: InvalidValueError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        # FastAPI echoes each offending input back; a NaN or infinity there cannot be rendered as
        # JSON (a 500). Location, message and type say what is wrong without it.
        detail = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, exc: RecursionError) -> Response:
        # Absurdly nested JSON: the client's fault, not the server's.
        return JSONResponse({"detail": "the body is nested too deeply"}, status_code=422)

    _document_spaces(app, service)
    app.add_middleware(
        RequestGuard,
        token=token,
        step_limit=observation_body_limit(int(np.prod(service.obs_space.shape or (1,)))),
    )
    return app


def _apply_experience(service: PolicyService, raw: bytes) -> int:
    """Validate an /v1/experience body chunk by chunk and apply its events (in a worker thread)."""

    def invalid(loc: tuple[Any, ...], msg: str, kind: str) -> RequestValidationError:
        return RequestValidationError([{"loc": ("body", *loc), "msg": msg, "type": kind}])

    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise invalid((), f"the body is not JSON: {exc}", "json_invalid") from None
    if not isinstance(doc, dict) or set(doc) != {"events"} or not isinstance(doc["events"], list):
        raise invalid((), "expected an object with exactly one field, events (a list)", "model_type")
    raw_events = doc["events"]
    if len(raw_events) > MAX_EVENTS:
        raise invalid(("events",), f"at most {MAX_EVENTS} events per request", "too_long")
    events: list[tuple[str, str, Any]] = []
    for start in range(0, len(raw_events), EVENT_CHUNK):
        try:
            chunk = _EVENTS.validate_python(raw_events[start : start + EVENT_CHUNK])
        except ValidationError as exc:
            errors = [
                {**e, "loc": ("body", "events", start + int(e["loc"][0]), *e["loc"][1:])}
                for e in exc.errors()
            ]
            raise RequestValidationError(errors) from None
        for i, ev in enumerate(chunk, start):
            try:
                events.append((ev.type, ev.episode_id, _payload(service, ev)))
            except InvalidValueError as exc:
                raise InvalidValueError(f"events[{i}]: {exc}") from None
    return service.apply_events(events)


def _document_spaces(app: FastAPI, service: PolicyService) -> None:
    """Put this job's observation and action schemas into the OpenAPI document (the request models are
    shared by every env, so they declare `observation` and `action` as any JSON)."""
    spaces = {
        "observation": space_json_schema(service.obs_space),
        "action": space_json_schema(service.action_space),
    }

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            # /v1/experience reads its body itself (off the event loop): document the model here.
            schemas = doc.setdefault("components", {}).setdefault("schemas", {})
            experience = ExperienceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(experience.pop("$defs", {}))
            schemas["ExperienceRequest"] = experience
            for model in schemas.values():
                for name, prop in model.get("properties", {}).items():
                    if spaces.get(name):
                        prop.update(spaces[name])
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _payload(service: PolicyService, ev: StartEvent | ActionEvent | ReturnsEvent | EndEvent) -> Any:
    if isinstance(ev, StartEvent):
        return ev.training_enabled
    if isinstance(ev, ActionEvent):
        return service.logged_action(ev.observation, ev.action, ev.action_logp, ev.action_dist_inputs)
    if isinstance(ev, ReturnsEvent):
        return ev.reward
    return (service.flat_obs(ev.observation), ev.truncated)


def resolve_token(spec: ExternalSpec, environ: Mapping[str, str] | None = None) -> str | None:
    """The bearer token: the env var (set from the Secret on Kubernetes), else tokenFile. None only
    when spec.insecure; otherwise a missing token is a SpecError (the server must not run open)."""
    env = os.environ if environ is None else environ
    if spec.insecure:
        return None
    token = env.get(TOKEN_ENV, "").strip()
    if not token and spec.token_file:
        try:
            token = Path(spec.token_file).read_text().strip()
        except OSError as exc:
            raise SpecError(
                [("spec.external.tokenFile", f"cannot read {spec.token_file}: {exc.strerror}")]
            ) from None
    if not token:
        raise SpecError(
            [
                (
                    "spec.external",
                    f"the policy server needs a bearer token: set {TOKEN_ENV}, tokenFile or tokenSecret "
                    "(Kubernetes), or insecure: true to serve without one",
                )
            ]
        )
    return token


class PolicyServer:
    """uvicorn serving `create_app(service)` in a daemon thread."""

    def __init__(self, service: PolicyService, *, host: str, port: int, token: str | None) -> None:
        self.service = service
        self.host = os.environ.get(HOST_ENV) or host
        install_accept_error_filter()
        config = uvicorn.Config(
            create_app(service, token=token),
            host=self.host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # Connection caps and a header deadline (guard.py); idle keep-alive connections close after
            # 5 s. Not limit_concurrency: it counts idle connections too, so they would make /healthz 503.
            http=GuardedHttpToolsProtocol,
            timeout_keep_alive=5,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="kuberl-policy-server", daemon=True)
        self.port = port

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(
                    f"the policy server could not start on {self.host}:{self.port} (port in use?)"
                )
            threading.Event().wait(0.02)
            waited += 0.02
            if waited > timeout:
                raise RuntimeError("the policy server did not start in time")
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
