"""scripts/kube: the versions the build script names (and caches under) are the versions the Go
modules build, and every Kubernetes staging module is pinned to the same release."""

from __future__ import annotations

import re
from pathlib import Path

KUBE = Path(__file__).resolve().parents[2] / "scripts" / "kube"


def _script_version(name: str) -> str:
    match = re.search(rf'^{name}="([0-9.]+)"$', (KUBE / "build.sh").read_text(), re.MULTILINE)
    assert match, f"{name} not found in scripts/kube/build.sh"
    return match.group(1)


def test_kubernetes_module_matches_the_script() -> None:
    version = _script_version("K8S_VERSION")
    go_mod = (KUBE / "kubernetes" / "go.mod").read_text()
    assert re.search(rf"^\s*k8s\.io/kubernetes v{re.escape(version)}\b", go_mod, re.MULTILINE), go_mod
    replaces = re.findall(r"^\s*(k8s\.io/[\w.-]+) => (k8s\.io/[\w.-]+) (v\S+)$", go_mod, re.MULTILINE)
    # A real list (about 30 modules), each replaced by itself at v0.<minor>.<patch> of this release.
    assert len(replaces) >= 25, replaces
    staging = "v0." + version.split(".", 1)[1]
    assert [r for r in replaces if r[0] != r[1] or r[2] != staging] == []
    # go.sum must pin what go.mod names, or `go build -mod=readonly` fails on a fresh machine.
    go_sum = (KUBE / "kubernetes" / "go.sum").read_text()
    assert f"k8s.io/kubernetes v{version} " in go_sum
    assert f"k8s.io/apiserver {staging} " in go_sum


def test_etcd_module_matches_the_script() -> None:
    version = _script_version("ETCD_VERSION")
    go_mod = (KUBE / "etcd" / "go.mod").read_text()
    assert re.search(rf"^require go\.etcd\.io/etcd/server/v3 v{re.escape(version)}$", go_mod, re.MULTILINE), (
        go_mod
    )
    assert f"go.etcd.io/etcd/server/v3 v{version} " in (KUBE / "etcd" / "go.sum").read_text()
    assert "etcdmain.Main(os.Args)" in (KUBE / "etcd" / "main.go").read_text()
