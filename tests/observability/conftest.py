"""The observability tests reuse the chart fixtures (a renderable chart copy, ``render``)."""

from tests.helm.conftest import chart, helm, render

__all__ = ["chart", "helm", "render"]
