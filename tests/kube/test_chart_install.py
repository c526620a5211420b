"""`helm install`, `helm upgrade` and `helm uninstall` of charts/kuberl into a real kube-apiserver, with
the commands of docs/install.md, offline, on a cluster where KubeRay's CRDs are installed (KubeRay is a
prerequisite). There is no kubelet, so the operator's Pod never runs; that the API server accepts every
object (admission, RBAC escalation checks, schemas) and the controller-manager turns the Deployment into
a ReplicaSet and a Pod is what is tested here. The operator running under this RBAC is
tests/integration/test_operator.py."""

from __future__ import annotations

import pytest

from tests.fixtures.kube import ControlPlane, wait_until

pytestmark = pytest.mark.kube

NS = "kuberl-system"  # exactly as docs/install.md
RELEASE = "kuberl"


def test_install_upgrade_uninstall_as_documented(kube: ControlPlane) -> None:
    api = kube.client
    # docs/install.md step 0's check: KubeRay's CRDs are there (the fixture installed them).
    kube.kubectl("get", "crd", "rayjobs.ray.io", "rayclusters.ray.io")

    out = kube.helm(
        "install", "kuberl", "charts/kuberl", "--namespace", "kuberl-system", "--create-namespace"
    ).stdout
    assert "STATUS: deployed" in out, out
    # The notes warn only when KubeRay is missing; here it is installed.
    assert "no ray.io/v1 RayJob API" not in out, out
    kube.kubectl("get", "crd", "rltrainingjobs.kuberl.io")

    deployment = api.get("deployments", NS, RELEASE)
    assert deployment is not None
    assert api.get("serviceaccounts", NS, RELEASE) is not None
    assert api.get("clusterroles", None, f"{RELEASE}-cluster") is not None
    binding = api.get("clusterrolebindings", None, f"{RELEASE}-cluster")
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": RELEASE, "namespace": NS}]
    assert api.get("services", NS, f"{RELEASE}-metrics") is not None
    # The controller-manager accepted the Deployment's template: a ReplicaSet and a (Pending) Pod.
    wait_until(
        lambda: api.list("replicasets", NS, selector="app.kubernetes.io/name=kuberl"), what="ReplicaSet"
    )
    pods = wait_until(
        lambda: api.list("pods", NS, selector="app.kubernetes.io/name=kuberl"), what="operator Pod"
    )
    assert pods[0]["spec"]["serviceAccountName"] == RELEASE
    assert pods[0]["status"].get("phase") == "Pending"  # no kubelet, no scheduler

    # The chart's ServiceAccount can do what the operator needs, and not more than that.
    sa = kube.service_account_kubeconfig(NS, RELEASE)
    for verb, resource in (
        ("watch", "rltrainingjobs.kuberl.io"),
        ("create", "rayjobs.ray.io"),
        ("create", "events"),
    ):
        assert kube.kubectl("auth", "can-i", verb, resource, "-A", kubeconfig=sa).stdout.strip() == "yes"
    for verb, resource in (("create", "secrets"), ("delete", "namespaces"), ("create", "pods")):
        denied = kube.kubectl("auth", "can-i", verb, resource, "-A", kubeconfig=sa, check=False)
        assert denied.stdout.strip() == "no", (verb, resource)

    # docs/install.md "Upgrading and uninstalling".
    team = kube.create_namespace("team-a")
    kube.helm(
        "upgrade",
        "kuberl",
        "charts/kuberl",
        "-n",
        "kuberl-system",
        "--reuse-values",
        "--set",
        f"watch.namespaces={{{team}}}",
    )
    assert api.get("roles", team, RELEASE) is not None
    assert api.get("rolebindings", team, RELEASE) is not None
    upgraded = api.get("deployments", NS, RELEASE)
    assert upgraded is not None
    container = upgraded["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KUBERL_NAMESPACES"] == team
    applied = kube.kubectl("apply", "-f", "charts/kuberl/crds/")
    assert "rltrainingjobs.kuberl.io" in applied.stdout

    kube.helm("uninstall", "kuberl", "-n", "kuberl-system")
    wait_until(lambda: api.get("deployments", NS, RELEASE) is None, what="Deployment removed")
    assert api.get("clusterroles", None, f"{RELEASE}-cluster") is None
    assert api.get("roles", team, RELEASE) is None
    # Helm keeps CRDs (and so every RLTrainingJob) on uninstall.
    assert api.get("customresourcedefinitions", None, "rltrainingjobs.kuberl.io") is not None


def test_install_with_kuberay_values_fails_with_the_pointer(kube: ControlPlane) -> None:
    proc = kube.helm(
        "install",
        "old",
        "charts/kuberl",
        "-n",
        "default",
        "--set",
        "kuberay-operator.enabled=true",
        check=False,
    )
    assert proc.returncode != 0
    assert "install it first with its own chart" in proc.stderr, proc.stderr
    assert kube.helm("status", "old", "-n", "default", check=False).returncode != 0
