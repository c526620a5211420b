"""The RLTrainingJob CRD on a real kube-apiserver: `kubectl apply -f crds/` is accepted, every example
passes server-side dry-run, unknown fields are refused under strict validation and pruned otherwise,
defaults are filled in by the server, and malformed jobs are refused by the server with the field named."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kuberl.cli import main
from kuberl.spec import SpecError, parse_job
from kuberl.spec.algorithms.base import supporting
from kuberl.spec.crd import config_keys
from tests.fixtures.kube import REPO_ROOT, ControlPlane, wait_until
from tests.kube.malformed import SERVER_CASES, Case, base_job

pytestmark = pytest.mark.kube

# examples/rllib/ holds RLlib tuned-example files, not jobs: `kuberl convert` turns them into jobs
# (test_converted_rllib_examples_pass_server_dry_run).
EXAMPLES = sorted(p for p in (REPO_ROOT / "examples").rglob("*.yaml") if "rllib" not in p.parts)
RLLIB_EXAMPLES = sorted((REPO_ROOT / "examples" / "rllib").glob("*.yaml"))


def test_crds_are_accepted_and_served(kube: ControlPlane, kuberl_crds: list[str]) -> None:
    assert sorted(kuberl_crds) == ["rltrainingjobs.kuberl.io"]
    crd = kube.client.get("customresourcedefinitions", None, "rltrainingjobs.kuberl.io")
    assert crd is not None
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    # NonStructuralSchema would be set (and pruning/defaulting off) if the schema were not structural.
    assert conditions.get("Established") == "True"
    assert "NonStructuralSchema" not in conditions
    # The short name and category a user types.
    out = kube.kubectl("api-resources", "--api-group=kuberl.io", "-o", "wide").stdout
    assert re.search(r"rltrainingjobs\s+rlj\s+kuberl.io/v1alpha1\s+true\s+RLTrainingJob", out), out
    # The OpenAPI document that `kubectl explain` reads is published a moment after Established.
    explain = wait_until(
        lambda: kube.kubectl("explain", "rltrainingjob.spec.backoffLimit", check=False).stdout,
        what="kubectl explain",
    )
    assert "retried" in explain, explain


def test_apply_is_idempotent(kube: ControlPlane, kuberl_crds: list[str]) -> None:
    """A second `kubectl apply -f crds/` (an upgrade with an unchanged CRD) changes nothing."""
    out = kube.kubectl("apply", "-f", str(REPO_ROOT / "crds")).stdout
    # One "unchanged" per CRD file (kopf's peering CRDs are no longer shipped: d7efd39).
    assert out.count("unchanged") == len(list((REPO_ROOT / "crds").glob("*.yaml"))), out


def test_every_example_passes_server_dry_run(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    assert len(EXAMPLES) >= 25
    files = [arg for p in EXAMPLES for arg in ("-f", str(p))]  # examples/cluster/ too
    out = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", kube_namespace, *files).stdout
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in EXAMPLES]
    for name in names:
        assert f"rltrainingjob.kuberl.io/{name} created (server dry run)" in out, out


def test_converted_rllib_examples_pass_server_dry_run(
    kube: ControlPlane,
    kuberl_crds: list[str],
    kube_namespace: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`kuberl convert RLLIB.yaml` prints a job `kubectl apply --validate=strict` accepts as it is."""
    assert len(RLLIB_EXAMPLES) >= 10
    files = []
    for example in RLLIB_EXAMPLES:
        assert main(["convert", str(example)]) == 0, example.name  # in-process: no interpreter start each
        path = tmp_path / example.name
        path.write_text(capsys.readouterr().out)
        files += ["-f", str(path)]
    # A job file may keep RLlib's old stop name too: the CRD lists it, so strict validation keeps it.
    old_name = base_job("old-stop-name")
    old_name["spec"]["stop"] = {"episodeRewardMean": 150}
    (tmp_path / "old-stop-name.yaml").write_text(yaml.safe_dump(old_name))
    files += ["-f", str(tmp_path / "old-stop-name.yaml")]
    out = kube.kubectl("apply", "--dry-run=server", "--validate=strict", "-n", kube_namespace, *files).stdout
    assert "rltrainingjob.kuberl.io/old-stop-name created (server dry run)" in out, out
    for example in RLLIB_EXAMPLES:
        assert f"rltrainingjob.kuberl.io/{example.stem} created (server dry run)" in out, out


def _create(
    kube: ControlPlane, ns: str, doc: dict[str, Any], *, validation: str = "Strict", dry_run: bool = False
) -> tuple[int, Any]:
    path = (
        kube.client.path("rltrainingjobs", ns)
        + f"?fieldValidation={validation}"
        + ("&dryRun=All" if dry_run else "")
    )
    return kube.client.request("POST", path, doc)


def test_unknown_fields_refused_strictly_and_pruned_otherwise(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str, tmp_path: Path
) -> None:
    doc = base_job("typo")
    doc["spec"]["resources"]["envRunner"] = 4  # a typo of envRunners
    path = tmp_path / "typo.yaml"
    path.write_text(yaml.safe_dump(doc))
    strict = kube.kubectl("apply", "--validate=strict", "-n", kube_namespace, "-f", str(path), check=False)
    assert strict.returncode != 0
    assert 'unknown field "spec.resources.envRunner"' in strict.stderr, strict.stderr
    assert kube.client.get("rltrainingjobs", kube_namespace, "typo") is None
    # Without strict validation the server warns, prunes the field and stores the rest.
    lax = kube.kubectl("apply", "--validate=warn", "-n", kube_namespace, "-f", str(path))
    assert 'unknown field "spec.resources.envRunner"' in lax.stderr, lax.stderr
    stored = kube.client.get("rltrainingjobs", kube_namespace, "typo")
    assert stored is not None
    assert "envRunner" not in stored["spec"]["resources"]
    assert stored["spec"]["resources"]["envRunners"] == 1


def test_server_fills_in_defaults_but_not_the_image(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    doc = {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {"name": "minimal"},
        "spec": {"algorithm": "ppo", "env": "CartPole-v1", "resources": {}, "cluster": {}},
    }
    code, stored = _create(kube, kube_namespace, doc)
    assert code == 201, stored
    spec = stored["spec"]
    assert spec["backoffLimit"] == 3
    assert spec["resume"] == "auto"
    assert spec["suspend"] is False
    assert spec["resources"]["envRunners"] == 2
    assert spec["resources"]["envsPerRunner"] == 8
    assert spec["cluster"]["imagePullPolicy"] == "IfNotPresent"
    # The operator picks the image of jobs that name none (the chart's trainer image).
    assert "image" not in spec["cluster"]
    # Sections the user left out stay out (defaults apply inside objects that exist).
    assert "stop" not in spec
    assert "checkpoint" not in spec


def test_cel_rules_see_null_as_absent(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    """`input: null` is how some tools write "no input"; the models accept it, so must the server."""
    doc = base_job("nulls")
    doc["spec"].update({"input": None, "output": None, "multiAgent": None, "seed": None})
    code, obj = _create(kube, kube_namespace, doc, dry_run=True)
    assert code == 201, obj


def _errors_by_file(stderr: str) -> dict[str, str]:
    """kubectl's per-object errors, keyed by the file named in each."""
    out: dict[str, str] = {}
    for chunk in re.split(r"(?=Error from server)", stderr):
        match = re.search(r'error when (?:creating|retrieving current configuration of)[^"]*"([^"]+)"', chunk)
        if match:
            out[Path(match.group(1)).stem] = chunk
    return out


@pytest.fixture(scope="module")
def server_refusals(
    kube: ControlPlane, kuberl_crds: list[str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """One `kubectl apply --dry-run=server --validate=strict -f DIR` over every malformed job (as a user
    applies a directory), then each case's error by its file name."""
    ns = kube.create_namespace("malformed")
    folder = tmp_path_factory.mktemp("malformed")
    for i, case in enumerate(SERVER_CASES):
        (folder / f"{case.id}.yaml").write_text(yaml.safe_dump(case.document(f"bad-{i}")))
    proc = kube.kubectl(
        "apply", "--dry-run=server", "--validate=strict", "-n", ns, "-f", str(folder), check=False
    )
    assert proc.returncode != 0
    return _errors_by_file(proc.stderr)


@pytest.mark.parametrize("case", SERVER_CASES, ids=lambda c: c.id)
def test_malformed_job_is_refused_by_the_server(server_refusals: dict[str, str], case: Case) -> None:
    error = server_refusals.get(case.id)
    assert error is not None, f"{case.id} was accepted by the server; errors: {sorted(server_refusals)}"
    assert case.field in error, error


def test_the_base_of_the_malformed_jobs_is_accepted(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    """So each malformed case is refused for its own change, not for something they share."""
    code, obj = _create(kube, kube_namespace, base_job("base"), dry_run=True)
    assert code == 201, obj


def test_custom_algorithm_config_is_open_and_left_to_the_trainer(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    """A custom algorithm (`module:Class`) is stored with its config as written, and the operator's parse
    accepts it without importing the class (here one that does not exist anywhere); the trainer's parse
    (`kuberl run` in the pod) refuses it naming spec.algorithm. A built-in job with a key its model lacks
    is refused by the server (test_builtin_config_keys_are_closed). A name that is neither a built-in nor
    module:Class is refused by the server."""
    from kuberl_operator.parsing import parse_body

    custom = base_job("custom-algo")
    custom["spec"]["algorithm"] = "my_pkg.algos:MyPPO"
    # Keys of its own, a key only DQN has, and a built-in key with a value no built-in model takes.
    custom["spec"]["config"] = {"auxLossCoeff": 0.1, "bufferSize": 5, "model": {"fcnetHiddens": [32], "x": 1}}
    custom["spec"]["input"] = {"uris": ["/data/recorded"]}  # a CEL rule that names built-ins only
    code, stored = _create(kube, kube_namespace, custom)
    assert code == 201, stored
    assert stored["spec"]["config"] == custom["spec"]["config"]  # nothing pruned
    job = parse_body(stored)
    assert job.spec.algorithm == "my_pkg.algos:MyPPO"
    assert "my_pkg" not in sys.modules
    with pytest.raises(SpecError) as refused:
        parse_job(stored)
    assert refused.value.problems[0][0] == "spec.algorithm", refused.value.problems
    assert "cannot import 'my_pkg.algos'" in refused.value.problems[0][1]

    # The same config under a built-in algorithm is refused by the server (its config is closed).
    builtin = base_job("builtin-extra-key")
    builtin["spec"]["config"] = custom["spec"]["config"]
    code, obj = _create(kube, kube_namespace, builtin, dry_run=True)
    assert code == 422, obj
    assert [c["field"] for c in obj["details"]["causes"]] == ["spec.config"], obj
    assert "PPO accepts: " in obj["message"], obj

    for bad in ("examples.custom_algo:", "not-a-module:Class", "PPO2"):
        wrong = base_job("bad-algorithm")
        wrong["spec"]["algorithm"] = bad
        code, obj = _create(kube, kube_namespace, wrong, dry_run=True)
        assert code == 422, (bad, obj)
        assert {c.get("field") for c in obj["details"]["causes"]} == {"spec.algorithm"}, (bad, obj)


def _apply_error(kube: ControlPlane, ns: str, tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", str(path), check=False)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_builtin_config_keys_are_closed(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str, tmp_path: Path
) -> None:
    """`kubectl apply` of a built-in algorithm's job with a config key its model does not take is
    refused at once, naming the algorithm and what it accepts, and the key when CEL can see it (a key
    some built-in algorithm takes); a key no built-in model has is counted but not named."""
    other = base_job("other-algorithms-key")
    other["spec"]["algorithm"] = "ppo"  # any case, as the models take it
    other["spec"]["config"] = {"train_batch_size": 512, "bufferSize": 10000}
    error = _apply_error(kube, kube_namespace, tmp_path, other)
    assert "spec.config: Invalid value" in error, error
    assert "config.bufferSize is not a hyperparameter of PPO. PPO accepts: gamma, lr," in error, error
    assert "clipParam" in error, error

    typo = base_job("typo")
    typo["spec"]["config"] = {"train_batch_size": 512, "clip_parm": 0.2}
    error = _apply_error(kube, kube_namespace, tmp_path, typo)
    assert "config has a key that no built-in algorithm takes" in error, error
    assert "PPO accepts: gamma, lr," in error, error

    # A key set to null looks the same to CEL (size() counts it, nothing else sees it): refused, saying
    # so. (`kubectl apply` drops nulls before sending; this is what a create or server-side apply gets.)
    null = base_job("null-key")
    null["spec"]["config"] = {"train_batch_size": 512, "gradClip": None}
    code, obj = _create(kube, kube_namespace, null, dry_run=True)
    assert code == 422, obj
    assert "or a null value" in obj["message"], obj

    # ES takes no gradient steps: lr, which every other algorithm has, is refused for it.
    es = base_job("es-lr")
    es["spec"]["algorithm"] = "ES"
    es["spec"]["config"] = {"lr": 0.01}
    error = _apply_error(kube, kube_namespace, tmp_path, es)
    assert "config.lr is not a hyperparameter of ES. ES accepts: " in error, error


def test_every_spelling_a_builtin_model_takes_passes_the_server(
    kube: ControlPlane, kuberl_crds: list[str], kube_namespace: str
) -> None:
    """For each built-in algorithm, a config with every key its model takes, in every spelling
    (camelCase, snake_case, RLlib's aliases), passes the server; the values are the operator's to check."""
    offline = supporting("offline_input")
    for algorithm, keys in config_keys().items():
        doc = base_job(f"all-keys-{algorithm.lower().replace('_', '-')}")
        doc["spec"]["algorithm"] = algorithm
        doc["spec"]["config"] = dict.fromkeys(keys, 1)
        if algorithm in offline:
            doc["spec"]["input"] = {"uris": ["/data/recorded"]}
        code, obj = _create(kube, kube_namespace, doc, dry_run=True)
        assert code == 201, (algorithm, obj)


# A job file as a user writes it: a bare `off` (YAML reads it as false), the strings "off" and none.
OFF_JOB = """\
apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: clips-off}
spec:
  algorithm: IMPALA
  env: CartPole-v1
  config:
    gradClip: off
    vtraceClipRhoThreshold: "off"
    vtraceClipPgRhoThreshold: none
---
apiVersion: kuberl.io/v1alpha1
kind: RLTrainingJob
metadata: {name: clip-null}
spec:
  algorithm: IMPALA
  env: CartPole-v1
  config: {gradClip: null}
"""


def test_off_survives_kubectl_apply_where_null_does_not(
    capsys: pytest.CaptureFixture[str],
    kube: ControlPlane,
    kuberl_crds: list[str],
    kube_namespace: str,
    tmp_path: Path,
) -> None:
    """`kubectl apply` drops nulls: `gradClip: null` reaches the cluster as the default clip (40), while
    `off` comes back as written and the operator's parse (and `kuberl render`'s job) turns the clips off."""
    path = tmp_path / "clips.yaml"
    path.write_text(OFF_JOB)
    written = {d["metadata"]["name"]: d for d in yaml.safe_load_all(OFF_JOB)}
    kube.kubectl("apply", "-n", kube_namespace, "-f", str(path))
    stored = {name: kube.client.get("rltrainingjobs", kube_namespace, name) for name in written}
    assert stored["clips-off"] is not None
    assert stored["clip-null"] is not None
    assert stored["clips-off"]["spec"]["config"] == written["clips-off"]["spec"]["config"]
    assert stored["clips-off"]["spec"]["config"] == {
        "gradClip": False,
        "vtraceClipRhoThreshold": "off",
        "vtraceClipPgRhoThreshold": "none",
    }
    off = parse_job(stored["clips-off"]).spec.config
    assert (off.grad_clip, off.vtrace_clip_rho_threshold, off.vtrace_clip_pg_rho_threshold) == (
        None,
        None,
        None,
    )
    # The problem `off` solves: the same file with null is another job on the cluster than locally.
    assert "gradClip" not in stored["clip-null"]["spec"].get("config", {})
    assert parse_job(stored["clip-null"]).spec.config.grad_clip == 40.0
    assert parse_job(written["clip-null"]).spec.config.grad_clip is None
    # What the trainer pod reads (the ConfigMap `kuberl render` prints): the clips off, as null.
    (tmp_path / "one.yaml").write_text(yaml.safe_dump(written["clips-off"]))
    assert main(["render", str(tmp_path / "one.yaml")]) == 0
    config_map = next(d for d in yaml.safe_load_all(capsys.readouterr().out) if d["kind"] == "ConfigMap")
    (job_text,) = config_map["data"].values()
    assert yaml.safe_load(job_text)["spec"]["config"] == {
        "gradClip": None,
        "vtraceClipRhoThreshold": None,
        "vtraceClipPgRhoThreshold": None,
    }
