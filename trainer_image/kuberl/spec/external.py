"""`spec.external`: train on experience from external simulators through an HTTP policy server.

The trainer then never steps `spec.env` itself; it only reads the env's observation and action spaces
from it. Simulators connect with `kuberl.PolicyClient` (see docs/external.md).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from kuberl.spec.base import WireModel
from kuberl.spec.ports import DEFAULT_POLICY_SERVER_PORT

TOKEN_ENV = "KUBERL_POLICY_SERVER_TOKEN"
# Overrides `host`: the operator sets 0.0.0.0 so the Ray head Service reaches the server.
HOST_ENV = "KUBERL_POLICY_SERVER_HOST"


class TokenSecretRef(WireModel):
    """A Kubernetes Secret key holding the bearer token; the operator maps it to an env var."""

    name: str = Field(..., min_length=1, description="Name of the Secret in the job's namespace.")
    key: str = Field("token", min_length=1, description="Key in the Secret whose value is the token.")


class ExternalSpec(WireModel):
    """The policy server that external simulators (game engines, robots, other processes) talk to."""

    enabled: bool = Field(
        False,
        description=(
            "Serve the HTTP policy API and train on what clients log, instead of stepping env runners. "
            "`spec.env` still names the environment: its observation and action spaces define the API."
        ),
    )
    host: str = Field(
        "127.0.0.1",
        min_length=1,
        description=(
            "Address the server binds locally. On Kubernetes the operator sets KUBERL_POLICY_SERVER_HOST=0.0.0.0 "
            "so the head Service can reach it."
        ),
    )
    port: int = Field(
        DEFAULT_POLICY_SERVER_PORT,
        ge=0,
        le=65535,
        description="Port of the policy server (0 picks a free port locally); exposed on the Ray head Service.",
    )
    token_secret: TokenSecretRef | None = Field(
        None,
        description=(
            f"Secret holding the bearer token clients must send (Kubernetes). Locally the token comes from the "
            f"{TOKEN_ENV} environment variable or tokenFile."
        ),
    )
    token_file: str | None = Field(
        None, description="Path of a file holding the bearer token (read when the server starts)."
    )
    insecure: bool = Field(
        False,
        description=(
            "Serve without a token (anyone who can reach the port may act and log experience). Without it, "
            "the server refuses to start when no token is configured."
        ),
    )
    idle_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description=(
            "An episode with no request for this long is treated as abandoned: its steps are trained on "
            "(cut as truncated, bootstrapped) and the episode is closed."
        ),
    )
    max_open_episodes: int = Field(
        1024, ge=1, description="Open episodes at most; starting one more answers 429."
    )

    @model_validator(mode="after")
    def _token_xor_insecure(self) -> ExternalSpec:
        if self.insecure and (self.token_secret is not None or self.token_file is not None):
            raise ValueError("insecure: true contradicts tokenSecret/tokenFile; set one or the other")
        return self
