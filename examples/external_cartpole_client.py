"""An external simulator: CartPole-v1 stepped in this process, driven by a kuberl policy server.

    KUBERL_POLICY_SERVER_TOKEN=secret kuberl serve examples/ppo-external.yaml     # terminal 1
    KUBERL_POLICY_SERVER_TOKEN=secret python examples/external_cartpole_client.py # terminal 2 (and 3, 4…)

Options: --address (default http://127.0.0.1:8900), --mode remote|local, --seed, --max-steps,
--update-interval (local mode).
It exits quietly when the server goes away (training finished).
"""

from __future__ import annotations

import argparse
import contextlib

import gymnasium as gym

from kuberl import PolicyClient
from kuberl.external.client import PolicyServerUnavailable


def run(
    address: str,
    *,
    mode: str,
    seed: int,
    max_steps: int | None,
    update_interval: float = 5.0,
    token: str | None = None,
) -> int:
    env = gym.make("CartPole-v1")
    steps = 0
    obs, _ = env.reset(seed=seed)
    try:
        # The server stopping (training reached its stop criterion) ends the loop; leaving the `with`
        # closes the client, which uploads what it still holds (local mode) or its last reward (remote).
        with (
            contextlib.suppress(PolicyServerUnavailable),
            PolicyClient(
                address,
                token=token,
                inference_mode=mode,  # type: ignore[arg-type]
                seed=seed,
                update_interval=update_interval,
            ) as client,
        ):
            while max_steps is None or steps < max_steps:
                eid = client.start_episode()
                while True:
                    action = client.get_action(eid, obs)
                    obs, reward, terminated, truncated, _ = env.step(action)
                    client.log_returns(eid, float(reward))
                    steps += 1
                    if terminated or truncated:
                        # The episode's last observation; a time limit is a truncation (bootstrapped).
                        client.end_episode(eid, obs, truncated=truncated and not terminated)
                        obs, _ = env.reset()
                        break
    finally:
        env.close()
    return steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--address", default="http://127.0.0.1:8900")
    p.add_argument("--mode", choices=["remote", "local"], default="remote")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument(
        "--update-interval", type=float, default=5.0, help="local mode: seconds between weight pulls"
    )
    args = p.parse_args()
    steps = run(
        args.address,
        mode=args.mode,
        seed=args.seed,
        max_steps=args.max_steps,
        update_interval=args.update_interval,
    )
    print(f"stepped {steps} env steps")


if __name__ == "__main__":
    main()
