"""Algorithm families: the driver-side training loops and learners that several algorithms share
(e.g. `sync` for PPO, A2C and PG). Each algorithm in kuberl.algorithms builds on at most one family."""
