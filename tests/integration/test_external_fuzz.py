"""Schemathesis fuzzes every operation of the policy server's OpenAPI document (with the token): no
request, however malformed, gets a 5xx, and every 2xx answer fits its declared schema."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from kuberl.external.server import PolicyServer
from tests.integration.external_common import TOKEN, running_server

AUTH = {"Authorization": f"Bearer {TOKEN}"}
_ids = itertools.count()


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[PolicyServer]:
    with running_server(max_open_episodes=10_000) as s:
        yield s


@pytest.fixture(scope="module")
def api_schema(fuzz_server: PolicyServer) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: Any, fuzz_server: PolicyServer) -> None:
    params = case.path_parameters
    if params and "episode_id" in params and len(str(params["episode_id"])) % 2 == 0:
        # Half the cases act on an open episode, so the body checks behind the episode lookup run too.
        eid = f"fuzz-{next(_ids)}"
        httpx.post(
            f"{fuzz_server.url}/v1/episodes", json={"episode_id": eid}, headers=AUTH
        ).raise_for_status()
        params["episode_id"] = eid
    case.call_and_validate(
        base_url=fuzz_server.url, headers=AUTH, checks=[not_a_server_error, response_schema_conformance]
    )
