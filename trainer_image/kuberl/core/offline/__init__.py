"""Offline RL plumbing: the Parquet experience format (schema), the driver-side writer behind
`spec.output`, the Ray Data reader behind `spec.input` and off-policy estimation. The offline
algorithms' base class and losses live in kuberl.algorithms.families (offline, marwil); `kuberl
record` in kuberl.record. See docs/offline.md."""
