"""Turn pydantic validation errors into one message per problem, each naming the field path."""

from __future__ import annotations

from pydantic import ValidationError

from kuberl.spec.algorithms import ALGORITHMS


class SpecError(ValueError):
    """An invalid RLTrainingJob. `problems` holds (field path, reason) pairs; str() is user-facing."""

    def __init__(self, problems: list[tuple[str, str]], *, source: str | None = None) -> None:
        self.problems = problems
        self.source = source
        where = f"{source}: " if source else ""
        lines = [f"{path}: {reason}" if path else reason for path, reason in problems]
        head = f"{where}invalid RLTrainingJob"
        super().__init__(head + ("\n  " + "\n  ".join(lines) if lines else ""))

    @property
    def first_path(self) -> str:
        return self.problems[0][0] if self.problems else ""


def _path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        # The discriminated union adds the tag ("PPO") to the location after "config"; users never wrote it.
        if i > 0 and loc[i - 1] == "config" and item in ALGORITHMS:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _reason(err: dict[str, object]) -> str:
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    if err.get("type") == "extra_forbidden":
        msg = "unknown field (check the spelling; see `kuberl crd` for the schema)"
    return msg


def from_validation_error(exc: ValidationError, *, prefix: str = "", source: str | None = None) -> SpecError:
    problems: list[tuple[str, str]] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = _path(loc)
        if prefix:
            path = f"{prefix}.{path}" if path else prefix
        ctx = err.get("ctx") or {}
        if err["type"] == "spec_combination" and ctx.get("problems"):
            # Cross-field rules (kuberl.spec.combinations) name their own fields below the model.
            problems.extend(
                (f"{path}.{field}" if path else field, reason) for field, reason in ctx["problems"]
            )
            continue
        problems.append((path, _reason(dict(err))))
    return SpecError(problems, source=source)
