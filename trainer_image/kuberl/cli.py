"""The `kuberl` command line.

  kuberl run JOB.yaml [--set key=value …]     train as the job says (same file as `kubectl apply`)
  kuberl train --run PPO --env CartPole-v1    quick start without a YAML file (RLlib's `rllib train` flags)
  kuberl convert RLLIB.yaml                   an RLlib tuned example as an RLTrainingJob (docs/rllib.md)
  kuberl rollout CHECKPOINT --steps N --episodes N --out FILE   RLlib's `rllib rollout`
  kuberl evaluate CHECKPOINT [--episodes N] [--video DIR]
  kuberl record CHECKPOINT --output URI --steps N   a trained policy's experience as offline data
  kuberl export CHECKPOINT --out FILE          the greedy policy as TorchScript or ONNX (no kuberl, no Ray)
  kuberl plot RUN_DIR                          learning-curve PNG
  kuberl render JOB.yaml                       what the operator would create (dry run)
  kuberl crd                                   the CustomResourceDefinition
  kuberl serve JOB.yaml                        train from external simulators (policy server, spec.external)
  kuberl serve --checkpoint CKPT [--port N]    answer actions over HTTP from a checkpoint (no training, no Ray)

Every user error prints one message naming the field and the reason, and exits with status 2.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kuberl.results import TrainResult

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """An error in what the user asked for; printed without a traceback."""


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            """The reader went away (`kuberl run … | head`, a closed terminal). Rich would exit(1) here,
            in the middle of training; instead print nothing more and let the run finish, checkpoint and
            exit as it would have."""
            self.quiet = True
            _discard_output(2 if stderr else 1)

    return _Console(stderr=stderr, highlight=False, soft_wrap=True)  # never split a URI across lines


def _discard_output(fd: int) -> None:
    """Point `fd` at /dev/null so later writes (and the interpreter's flush at exit) cannot fail."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        pass


def _esc(text: object) -> str:
    """User text (names, paths, URIs, error messages) inside rich markup: `s3://bucket[/prefix]` or
    `[red]` must print as written, never be parsed as tags."""
    from rich.markup import escape

    return escape(str(text))


# -- run / train -----------------------------------------------------------------------------------
def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "—" if x is None else format(x, spec)


def _tune(job: Any) -> int:
    """spec.tune: a Ray Tune experiment instead of one run (docs/tune.md)."""
    from kuberl.trainer import run_dir_for
    from kuberl.tune import run_tune
    from kuberl.tune.report import print_outcome

    out = _console()
    t = job.spec.tune
    out.print(
        f"[bold]kuberl[/] tune {_esc(job.spec.algorithm)} on {_esc(job.spec.env)}: {t.scheduler.type}, "
        f"{_esc(t.metric)} ({t.mode}) — run dir [cyan]{_esc(run_dir_for(job))}[/]"
    )
    outcome = run_tune(job)
    print_outcome(out, outcome)
    if outcome.interrupted:
        return EXIT_INTERRUPTED
    return 1 if outcome.best is None and outcome.errors else 0


def _train(job: Any, *, progress: bool) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from kuberl.sampling import resolve_sampling
    from kuberl.trainer import run_dir_for, run_job

    if job.spec.tune is not None:
        return _tune(job)
    out = _console()
    stop = job.spec.stop
    out.print(
        f"[bold]kuberl[/] {_esc(job.spec.algorithm)} on {_esc(job.spec.env)} — "
        f"run dir [cyan]{_esc(run_dir_for(job))}[/]"
    )
    out.print(_esc(resolve_sampling(job)[1].describe()), highlight=False)
    total = stop.timesteps
    columns = [
        TextColumn("iter {task.fields[it]:>4}"),
        BarColumn() if total else TextColumn(""),
        TextColumn("{task.completed:>10,.0f} steps"),
        TextColumn("return {task.fields[ret]:>7}"),
        TextColumn("{task.fields[sps]:>8} steps/s"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=out, disable=not progress, transient=False) as bar:
        task = bar.add_task("train", total=total, it=0, ret="—", sps="—")

        def on_start(algo: Any) -> None:
            # spec.external: where simulators connect (multi-agent algorithms have no runner group)
            url = getattr(getattr(algo, "runners", None), "url", None)
            if url:
                out.print(f"policy server: [cyan]{_esc(url)}[/] (OpenAPI document: {_esc(url)}/openapi.json)")
            bar.update(task, completed=algo.timesteps, it=algo.iteration)

        def on_result(r: TrainResult) -> None:
            sps = r["num_env_steps_sampled"] / max(r["time_this_iter_s"], 1e-9)
            bar.update(
                task,
                completed=r["timesteps_total"],
                it=r["training_iteration"],
                ret=_fmt(r["episode_return_mean"]),
                sps=f"{sps:,.0f}",
            )
            if not progress:
                out.print(
                    f"iter {r['training_iteration']:>4}  steps {r['timesteps_total']:>10,}  "
                    f"return {_fmt(r['episode_return_mean']):>7}  {sps:,.0f} steps/s"
                )

        outcome = run_job(job, on_result=on_result, on_start=on_start)
    if outcome.resumed_from:
        out.print(f"resumed from {_esc(outcome.resumed_from)}")
    r = outcome.result or {}
    out.print(
        f"[bold]{'interrupted' if outcome.interrupted else 'done'}[/]: "
        f"{_esc(outcome.stopped_by or 'no iterations')} — "
        f"return {_fmt(r.get('episode_return_mean'))}, {r.get('timesteps_total', 0):,} steps, "
        f"{r.get('time_total_s', 0.0):.1f} s training"
    )
    if outcome.last_checkpoint:
        out.print(f"checkpoint: {_esc(outcome.last_checkpoint)}")
    out.print(f"run dir: [cyan]{_esc(outcome.run_dir)}[/]")
    return EXIT_INTERRUPTED if outcome.interrupted else 0


def cmd_run(args: argparse.Namespace) -> int:
    from kuberl.spec import load_job

    overrides = list(args.set or [])
    if args.run_dir:
        overrides.append(f"runDir={args.run_dir}")
    job = load_job(args.job, overrides)
    return _train(job, progress=not args.no_progress and sys.stdout.isatty())


def cmd_serve(args: argparse.Namespace) -> int:
    """`kuberl run` with spec.external.enabled forced on (docs/external.md), or with --checkpoint the
    inference-only server (docs/export.md)."""
    if args.checkpoint:
        if args.job or args.set or args.run_dir:
            raise UserError(
                "--checkpoint: serves a trained policy; give no JOB.yaml, --set or --run-dir with it"
            )
        from kuberl.inference import serve_checkpoint

        def ready(url: str) -> None:
            # stdout, flushed: scripts (and the tests) wait for this line to know the port
            print(f"serving {args.checkpoint} at {url} (POST {url}/v1/actions)", flush=True)

        serve_checkpoint(
            args.checkpoint, host=args.host, port=args.port, policy_id=args.policy, on_ready=ready
        )
        return 0
    if not args.job:
        raise UserError("serve: give a JOB.yaml (train from external simulators) or --checkpoint CKPT")
    args.set = [*(args.set or []), "external.enabled=true"]
    return cmd_run(args)


def _json_flag(flag: str, text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{flag}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag}: expected a JSON object, got {type(value).__name__}")
    return value


def cmd_train(args: argparse.Namespace) -> int:
    """`rllib train` as a job: --config and --stop take RLlib's keys (kuberl.spec.rllib) as well as kuberl's."""
    from kuberl.spec import ALGORITHMS, apply_overrides, parse_job
    from kuberl.spec.rllib import convert_config, convert_stop

    algo = args.algo.upper()
    if algo not in ALGORITHMS:
        raise UserError(f"--run: unknown algorithm {args.algo!r}; choose one of {', '.join(ALGORITHMS)}")
    config = _json_flag("--config", args.config)
    spec, warnings, problems = convert_config(config, algo, where="--config")
    stop, stop_problems = convert_stop(_json_flag("--stop", args.stop), where="--stop")
    problems += stop_problems
    if problems:
        from kuberl.spec import SpecError

        raise SpecError(problems, source="kuberl train")
    for warning in warnings:
        logging.getLogger("kuberl.rllib").warning("%s", warning)
    for flag, key, value in (
        ("--stop-return", "episodeReturnMean", args.stop_return),
        ("--stop-timesteps", "timesteps", args.stop_timesteps),
        ("--stop-iters", "iterations", args.stop_iters),
    ):
        if value is None:
            continue
        if key in stop:
            raise UserError(f"{flag}: --stop sets {key} already; give one of the two")
        stop[key] = value
    if "env" in spec and spec["env"] != args.env:
        raise UserError(f"--config: env {spec['env']!r} differs from --env {args.env!r}")
    resources = {"envRunners": args.env_runners, **spec.pop("resources", {})}
    checkpoint = spec.pop("checkpoint", {})
    if args.checkpoint_freq is not None:
        checkpoint["everyIterations"] = args.checkpoint_freq
    if args.checkpoint_at_end:
        checkpoint["atEnd"] = True
    doc = {
        "apiVersion": "kuberl.io/v1alpha1",
        "kind": "RLTrainingJob",
        "metadata": {
            # A DNS label: APEX_DDPG's underscore and an env id's '/' or '_' become '-'.
            "name": args.name or re.sub(r"[^a-z0-9-]+", "-", f"{algo}-{args.env}".lower())[:40].strip("-")
        },
        "spec": {
            "resume": "never",
            "metrics": {"port": args.metrics_port},
            **spec,
            "algorithm": algo,
            "env": args.env,
            "config": spec.get("config", {}),
            "stop": stop,
            "resources": resources,
            **({"checkpoint": checkpoint} if checkpoint else {}),
        },
    }
    job = parse_job(apply_overrides(doc, args.set or []), source="kuberl train")
    if job.spec.run_dir is None and job.spec.resume == "never":
        # Run again under the same name: a new run gets its own directory (runs/<name>-2, -3 …) rather
        # than appending to the old run's results and checkpoints.
        job.spec.run_dir = str(_fresh_dir(Path("runs") / job.metadata.name))
    return _train(job, progress=not args.no_progress and sys.stdout.isatty())


def cmd_convert(args: argparse.Namespace) -> int:
    """Print an RLlib tuned example (or a job file) as the RLTrainingJob `kubectl apply` takes: validated
    first, with only the fields the file sets, in the CRD's camelCase."""
    import yaml

    from kuberl.spec import apply_overrides, parse_job
    from kuberl.spec.load import load_document

    doc = apply_overrides(load_document(args.file), list(args.set or []))
    job = parse_job(doc, source=str(args.file))
    out = {
        "apiVersion": job.api_version,
        "kind": job.kind,
        "metadata": job.metadata.model_dump(mode="json", by_alias=True, exclude_unset=True),
        "spec": job.spec.model_dump(mode="json", by_alias=True, exclude_unset=True),
    }
    sys.stdout.write(yaml.safe_dump(out, sort_keys=False))
    return 0


def _fresh_dir(path: Path) -> Path:
    """`path` if it does not exist or is empty, else the first free `path-N`."""
    candidate, n = path, 1
    while candidate.exists() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


# -- evaluate / plot -------------------------------------------------------------------------------
def cmd_evaluate(args: argparse.Namespace) -> int:
    from kuberl.evaluate import evaluate_checkpoint

    if args.video:
        try:  # gymnasium's RecordVideo needs it only once the first episode ends: ask before playing
            import moviepy  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            raise UserError(
                "--video: recording MP4s needs moviepy, which is not installed "
                "(pip install 'kuberl[video]', or leave out --video)"
            ) from None
    stats = evaluate_checkpoint(
        args.checkpoint, episodes=args.episodes, video_dir=args.video, explore=args.explore
    )
    _console().print_json(json.dumps(stats))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from kuberl.export import export_checkpoint

    info = export_checkpoint(args.checkpoint, fmt=args.format, out=Path(args.out), policy_id=args.policy)
    _console().print_json(json.dumps(info))
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    """RLlib's `rllib rollout`: play a checkpoint's policy for --steps env steps or --episodes episodes,
    whichever ends first (0: no limit of that kind), and write each episode's return and length."""
    from kuberl.evaluate import rollout_checkpoint

    if args.steps < 0 or args.episodes < 0:
        raise UserError("--steps and --episodes: must be 0 (no limit) or more")
    if not args.steps and not args.episodes:
        raise UserError("--steps and --episodes are both 0: give at least one limit")
    out = Path(args.out) if args.out else None
    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out: directory {out.parent} does not exist")
    try:
        stats = rollout_checkpoint(
            args.checkpoint, steps=args.steps or None, episodes=args.episodes or None, explore=args.explore
        )
    except ValueError as exc:
        raise UserError(f"rollout: {exc}") from None
    if out is not None:
        out.write_text(json.dumps(stats, indent=2) + "\n")
    summary = {k: v for k, v in stats.items() if k != "episode_returns" and k != "episode_lengths"}
    _console().print_json(json.dumps(summary))
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from kuberl.record import record_checkpoint

    try:
        stats = record_checkpoint(
            args.checkpoint, output=args.output, steps=args.steps, envs=args.envs, seed=args.seed
        )
    except ValueError as exc:
        raise UserError(f"record: {exc}") from None
    _console().print_json(json.dumps(stats))
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from kuberl.plot import plot_run

    try:
        path = plot_run(Path(args.run_dir), Path(args.out) if args.out else None)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"plot {args.run_dir}: {exc}") from None
    _console().print(f"wrote {_esc(path)}")
    return 0


# -- Kubernetes ------------------------------------------------------------------------------------
def cmd_render(args: argparse.Namespace) -> int:
    import yaml

    from kuberl.spec import load_job
    from kuberl_operator.builders import render_job

    job = load_job(args.job, list(args.set or []))
    sys.stdout.write(yaml.safe_dump_all(render_job(job), sort_keys=False))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from kuberl.spec.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


# -- entry -----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kuberl", description="Reinforcement learning at scale, Kubernetes-native."
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="train as an RLTrainingJob YAML file says")
    run.add_argument("job", help="RLTrainingJob YAML file")
    run.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. config.lr=0.001"
    )
    run.add_argument("--run-dir", help="run directory (default ./runs/<name>)")
    run.add_argument("--no-progress", action="store_true", help="print a line per iteration instead of a bar")
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="train from external simulators through the HTTP policy server")
    serve.add_argument(
        "job", nargs="?", help="RLTrainingJob YAML file (its env gives the observation/action spaces)"
    )
    serve.add_argument(
        "--checkpoint",
        help="inference only: answer actions from this checkpoint (directory, store root, s3://)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="--checkpoint: address to listen on")
    serve.add_argument("--port", type=int, default=8000, help="--checkpoint: port (0: any free one)")
    serve.add_argument("--policy", help="--checkpoint: multi-agent policy id (default: the learning one)")
    serve.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a field, e.g. external.port=9000"
    )
    serve.add_argument("--run-dir", help="run directory (default ./runs/<name>)")
    serve.add_argument(
        "--no-progress", action="store_true", help="print a line per iteration instead of a bar"
    )
    serve.set_defaults(func=cmd_serve)

    train = sub.add_parser("train", help="quick start without a YAML file")
    train.add_argument("--algo", "--run", dest="algo", required=True, help="algorithm, e.g. PPO")
    train.add_argument("--env", required=True, help="Gymnasium id or module:factory")
    train.add_argument(
        "--config",
        help="config as JSON, kuberl's or RLlib's keys (docs/rllib.md), e.g. '{\"lr\": 0.001, \"num_workers\": 0}'",
    )
    train.add_argument(
        "--stop", help="stop criteria as JSON, RLlib's names too, e.g. '{\"episode_reward_mean\": 150}'"
    )
    train.add_argument(
        "--checkpoint-freq", type=int, help="checkpoint every N iterations (0: only at the end)"
    )
    train.add_argument("--checkpoint-at-end", action="store_true", help="checkpoint when training stops")
    train.add_argument("--name", help="run name (default <algo>-<env>)")
    train.add_argument("--env-runners", type=int, default=0, help="EnvRunner actors (0: no Ray)")
    train.add_argument("--stop-return", type=float, help="stop at this mean episode return")
    train.add_argument("--stop-timesteps", type=int, help="stop after this many env steps")
    train.add_argument("--stop-iters", type=int, help="stop after this many iterations")
    train.add_argument(
        "--metrics-port", type=int, default=0, help="port for /metrics and /status (0: any free)"
    )
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any spec field")
    train.add_argument("--no-progress", action="store_true")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="play episodes with a checkpoint's policy")
    ev.add_argument("checkpoint", help="checkpoint URI: a checkpoint directory, a store root, or s3://…")
    ev.add_argument("--episodes", type=int, default=10)
    ev.add_argument("--video", metavar="DIR", help="record videos of the episodes into DIR")
    ev.add_argument("--explore", action="store_true", help="sample actions instead of acting greedily")
    ev.set_defaults(func=cmd_evaluate)

    ro = sub.add_parser("rollout", help="play a checkpoint's policy as RLlib's `rllib rollout` did")
    ro.add_argument("checkpoint", help="checkpoint URI: a checkpoint directory, a store root, or s3://…")
    ro.add_argument("--steps", type=int, default=10000, help="stop after this many env steps (0: no limit)")
    ro.add_argument("--episodes", type=int, default=0, help="stop after this many episodes (0: no limit)")
    ro.add_argument("--out", help="write every episode's return and length as JSON to this file")
    ro.add_argument("--explore", action="store_true", help="sample actions instead of acting greedily")
    ro.set_defaults(func=cmd_rollout)

    cv = sub.add_parser("convert", help="print an RLlib tuned-example YAML as an RLTrainingJob")
    cv.add_argument("file", help="RLlib experiment YAML ({name: {env, run, stop, config}}) or a job file")
    cv.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field of the job")
    cv.set_defaults(func=cmd_convert)

    rec = sub.add_parser("record", help="sample a checkpoint's policy into Parquet data (docs/offline.md)")
    rec.add_argument("checkpoint", help="checkpoint URI: a checkpoint directory, a store root, or s3://…")
    rec.add_argument("--output", required=True, help="a directory, file:///dir or s3://bucket/prefix")
    rec.add_argument("--steps", type=int, required=True, help="env steps to record")
    rec.add_argument("--envs", type=int, default=4, help="sub-environments sampled in parallel")
    rec.add_argument("--seed", type=int, help="seed of the recording envs (default: the job's)")
    rec.set_defaults(func=cmd_record)

    ex = sub.add_parser("export", help="a checkpoint's greedy policy as a file that runs without kuberl")
    ex.add_argument("checkpoint", help="checkpoint URI: a checkpoint directory, a store root, or s3://…")
    ex.add_argument("--format", default="torchscript", help="torchscript or onnx (docs/export.md)")
    ex.add_argument("--out", required=True, help="the file to write, e.g. policy.pt")
    ex.add_argument("--policy", help="multi-agent: the policy id (default: the learning policy)")
    ex.set_defaults(func=cmd_export)

    pl = sub.add_parser("plot", help="learning-curve PNG of a run")
    pl.add_argument("run_dir")
    pl.add_argument("--out", help="output PNG (default RUN_DIR/learning_curve.png)")
    pl.set_defaults(func=cmd_plot)

    rd = sub.add_parser("render", help="print the RayJob and ConfigMap the operator would create")
    rd.add_argument("job")
    rd.add_argument("--set", action="append", metavar="KEY=VALUE")
    rd.set_defaults(func=cmd_render)

    crd = sub.add_parser("crd", help="print the RLTrainingJob CustomResourceDefinition")
    crd.set_defaults(func=cmd_crd)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from kuberl.spec import SpecError
    from kuberl.trainer import TrainingFailedError

    errors: tuple[type[BaseException], ...] = (SpecError, UserError)
    try:
        from kuberl.checkpoint import CheckpointError

        errors = (*errors, CheckpointError)
    except ImportError:
        pass
    from kuberl.core.callbacks import CallbackError, callback_error_of

    try:
        rc: int = args.func(args)
        return rc
    except errors as exc:
        _console(stderr=True).print(f"[bold red]error:[/] {_esc(exc)}", highlight=False, soft_wrap=True)
        return EXIT_USAGE
    except KeyboardInterrupt:
        _console(stderr=True).print("aborted")
        return EXIT_INTERRUPTED
    except CallbackError as exc:
        # A user callback raised, in the driver or in an env-runner actor (Ray's wrapper is a subclass):
        # its message names the hook and the line; the kuberl and Ray frames below it are noise.
        failed = callback_error_of(exc) or exc
        _console(stderr=True).print(f"error: {failed.message}", markup=False, highlight=False, soft_wrap=True)
        return failed.exit_status
    except (
        TrainingFailedError
    ) as exc:  # a run that cannot end well: its own exit status (docs/reliability.md)
        _console(stderr=True).print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return exc.exit_status
    finally:
        if argv is None:  # the `kuberl` process itself (tests call main(argv) inside their own process)
            # The interpreter exits next, and its final garbage collections walk every object torch and
            # torch._dynamo created (6.4 s of exit at load 14 on 2 cores; 1.2 s frozen). Atexit handlers
            # and module teardown still run; only the objects alive now are left out of those walks.
            gc.freeze()


if __name__ == "__main__":
    sys.exit(main())
