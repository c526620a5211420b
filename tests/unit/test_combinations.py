"""Cross-field spec rules (kuberl.spec.combinations): combinations that cannot work are refused at
validation with the field path and the reason, by the CLI's parser and the operator's alike."""

from __future__ import annotations

from typing import Any

import pytest

from kuberl.spec import SpecError, parse_job, parse_spec
from kuberl.spec.ports import DEFAULT_METRICS_PORT, RAY_HEAD_PORTS, RAY_METRICS_PORTS
from kuberl.spec.ports import DEFAULT_POLICY_SERVER_PORT as DEFAULT_PORT

MA_ENV = "kuberl.multi_agent.envs:coop_match"


def doc(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "combo"}, "spec": {"algorithm": "PPO", "env": "CartPole-v1", **spec}}


def ma(**spec: Any) -> dict[str, Any]:
    return doc(env=MA_ENV, multiAgent={}, **spec)


def problems(document: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(SpecError) as err:
        parse_job(document)
    return dict(err.value.problems)


EXTERNAL = {"enabled": True, "insecure": True}


@pytest.mark.parametrize(
    ("document", "path", "reason"),
    [
        (ma(external=EXTERNAL), "spec.external.enabled", "policy server serves single-agent simulators"),
        (ma(input={"uris": ["/d"]}), "spec.input", "offline training (BC, MARWIL, CQL) is single-agent"),
        (ma(config={"model": {"useLstm": True}}), "spec.config.model.useLstm", "no LSTM state per agent"),
        (ma(algorithm="IMPALA"), "spec.multiAgent", "IMPALA does not run multi-agent"),
        (ma(algorithm="BC", input={"uris": ["/d"]}), "spec.multiAgent", "BC does not run multi-agent"),
        (
            ma(config={"observationFilter": "MeanStdFilter"}),
            "spec.config.observationFilter",
            "must be NoFilter with multiAgent",
        ),
        (doc(input={"uris": ["/d"]}), "spec.input", "PPO learns from the env and never reads"),
        (doc(algorithm="BC"), "spec.input", "BC trains from recorded experience"),
        (
            doc(algorithm="BC", input={"uris": ["/d"]}, output={"uri": "/o"}),
            "spec.output",
            "nothing to record",
        ),
        (
            doc(algorithm="MARWIL", input={"uris": ["/d"]}, external=EXTERNAL),
            "spec.external.enabled",
            "not from simulators",
        ),
    ],
)
def test_unsupported_combinations_name_the_field(document: dict[str, Any], path: str, reason: str) -> None:
    found = problems(document)
    assert path in found, found
    assert reason in found[path]


def test_every_problem_is_reported_at_once() -> None:
    found = problems(ma(input={"uris": ["/d"]}, external=EXTERNAL, config={"model": {"useLstm": True}}))
    assert set(found) == {"spec.input", "spec.external.enabled", "spec.config.model.useLstm"}


def test_parse_spec_prefixes_the_paths_as_the_operator_reports_them() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(ma(external=EXTERNAL)["spec"])
    assert err.value.first_path == "spec.external.enabled"


def test_supported_multi_agent_combinations_are_accepted() -> None:
    for algorithm in ("PPO", "A2C", "PG", "DQN", "SAC", "TD3", "DDPG"):
        assert parse_job(ma(algorithm=algorithm)).spec.multi_agent is not None
    spec = parse_job(ma(metrics={"port": 9000}, output={"uri": "/tmp/rec"})).spec
    assert spec.metrics.port == 9000
    assert spec.output is not None  # recorded per agent (tests/unit/test_multi_agent_output.py)


# -- ports -------------------------------------------------------------------------------------------


def external(port: int, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return doc(external={**EXTERNAL, "port": port}, metrics=metrics or {"port": 8080})


@pytest.mark.parametrize(
    ("document", "path"),
    [
        (external(8080), "spec.external.port"),
        (external(9100, {"port": 9100}), "spec.external.port"),
        # Port 0 is a fixed default on Kubernetes; the same document runs there, so compare defaults.
        (external(0, {"port": DEFAULT_PORT}), "spec.external.port"),
        (external(DEFAULT_METRICS_PORT, {"port": 0}), "spec.external.port"),
    ],
)
def test_policy_server_on_the_metrics_port_is_refused_naming_both(
    document: dict[str, Any], path: str
) -> None:
    found = problems(document)
    assert "is also metrics.port" in found[path]


@pytest.mark.parametrize("port", sorted(RAY_HEAD_PORTS))
def test_ports_of_the_ray_head_are_refused(port: int) -> None:
    assert "on the Ray head" in problems(external(port))["spec.external.port"]
    assert "on the Ray head" in problems(doc(metrics={"port": port}))["spec.metrics.port"]


def test_ray_metrics_exporter_port_is_refused_for_the_policy_server() -> None:
    assert "Ray's metrics exporter" in problems(external(8079))["spec.external.port"]
    # With /metrics on 8079 the operator moves Ray's exporter to 8078, so 8079 is the clash there.
    assert parse_job(external(8078, {"port": 9000})).spec.external.port == 8078
    assert "Ray's metrics exporter" in problems(external(8078, {"port": 8079}))["spec.external.port"]


def test_ports_do_not_clash_when_a_server_is_off() -> None:
    assert parse_job(doc(external={"port": 8080}, metrics={"port": 8080})).spec.external.port == 8080
    off = doc(external={**EXTERNAL, "port": 8080}, metrics={"enabled": False, "port": 8080})
    assert parse_job(off).spec.external.enabled


def test_the_operator_opens_the_ports_the_spec_checks() -> None:
    from kuberl_operator import builders
    from kuberl_operator.labels import PORT_RAY_METRICS, PORT_TRAINER

    ray_job = builders.build_ray_job(parse_job(doc(metrics={"port": 0})), attempt=0, resume="auto")
    head = ray_job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    opened = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert set(RAY_HEAD_PORTS) <= set(opened.values())
    assert opened[PORT_TRAINER] == DEFAULT_METRICS_PORT
    assert opened[PORT_RAY_METRICS] in RAY_METRICS_PORTS
