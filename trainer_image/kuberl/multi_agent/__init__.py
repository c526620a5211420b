"""Multi-agent training and self-play on PettingZoo environments (docs/multi-agent.md)."""
