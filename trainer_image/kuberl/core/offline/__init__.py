"""Offline RL plumbing: the Parquet experience format (schema), the driver-side writer behind
`spec.output`, the Ray Data reader behind `spec.input`, off-policy estimation, and the base class and
losses the offline algorithms (BC, MARWIL, CQL) share. See docs/offline.md."""
