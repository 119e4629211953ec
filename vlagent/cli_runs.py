"""The ``vlagent`` commands that work on recorded runs: ``show``, ``replay``, ``record``, ``report``.

They are plain click commands that :mod:`vlagent.cli` adds to its group; like it, they only
decide what users see and leave the work to the library.
"""

from __future__ import annotations

from pathlib import Path

import click
import yaml

__all__ = ["RUN_COMMANDS"]

#: Exit status of a replay that diverged or failed (the CLI's EXIT_FAILED).
EXIT_FAILED = 1


@click.command()
@click.argument("run_dir", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(run_dir: str, as_json: bool) -> None:
    """Summarise a recorded run (RUN_DIR holds trajectory.jsonl)."""
    import json

    from vlagent.actions import describe_action
    from vlagent.recorder import load_trajectory

    traj = load_trajectory(run_dir)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "task": traj.start.task if traj.start else None,
                    "steps": [s.model_dump(mode="json") for s in traj.steps],
                    "end": traj.end.model_dump(mode="json") if traj.end else None,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    click.echo(f"task: {traj.start.task if traj.start else '?'}")
    for step in traj.steps:
        thought = f"  # {step.thought}" if step.thought else ""
        click.echo(f"{step.index:>3}  {describe_action(step.action):<40} model {step.model_s:6.3f}s{thought}")
    click.echo(f"end: {traj.end.reason} {traj.end.detail}" if traj.end else "end: (not recorded - interrupted run)")


@click.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--device", "-d", help="Replay on this device instead of the recorded one (e.g. sim:3).")
@click.option("--heal/--no-heal", default=False, show_default=True, help="Re-locate changed targets with --policy.")
@click.option("--policy", default="qwen2vl", show_default=True, help="Policy used to heal.")
@click.option("--model", help="Model for the healing policy.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="runs/replay",
    show_default=True,
    help="Each replay is recorded into a new directory here.",
)
def replay(source: str, device: str | None, heal: bool, policy: str, model: str | None, out: str) -> None:
    """Re-execute a recorded run directory or a scenario file; stop with a report where the screen differs."""
    from vlagent.policies.registry import open_policy
    from vlagent.recorder import new_run_dir

    options = {"model": model} if model else {}
    healer = open_policy(policy, **options) if heal else None
    path = Path(source)
    if path.is_file():
        from vlagent.evaluate import EvalConfig, evaluate
        from vlagent.scenario import load_scenario

        layout = int(device.split(":", 1)[1]) if device and device.startswith("sim:") else None
        scenario = load_scenario(path)
        target = new_run_dir(out, f"replay-{scenario.name}")
        result = evaluate([scenario], EvalConfig(out=target, heal=healer, layout_seed=layout))
        item = result.results[0]
        status = item.replay["status"] if item.replay else item.end_reason
        click.echo(f"{'passed' if item.success else 'FAILED'}: {status}; report {target / 'report.html'}")
        if not item.success:
            raise SystemExit(EXIT_FAILED)
        return
    from vlagent.recorder import load_trajectory
    from vlagent.replay import replay_run

    recorded = load_trajectory(path)  # a broken run is refused before a directory is made for its replay
    target = new_run_dir(out, f"replay-{recorded.start.task if recorded.start else path.name}")
    outcome = replay_run(path, target, heal=healer, device=device)
    click.echo(f"replay recorded in {target}")
    click.echo(
        f"replay {outcome.status} ({outcome.healed} healed)" + (f"; report {outcome.report}" if outcome.report else "")
    )
    if outcome.status == "diverged":
        raise SystemExit(EXIT_FAILED)


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="Scenario file to write (.yaml).")
@click.option("--name", help="Scenario name (default: from the task).")
@click.option(
    "--check",
    "checks",
    multiple=True,
    required=True,
    help="Success check KIND=VALUE (toggle=wifi, note='hi', app=Settings, text=Saved...), "
    "or a YAML mapping such as '{toggle: wifi, value: false}'.",
)
def record(run_dir: str, out: str, name: str | None, checks: tuple[str, ...]) -> None:
    """Turn a recorded run into a scenario whose gold steps are its actions."""
    from pydantic import ValidationError

    from vlagent.errors import ConfigError
    from vlagent.replay import scenario_from_run
    from vlagent.scenario import scenario_to_yaml
    from vlagent.tasks import CHECK_KINDS, Check, parse_check

    parsed: list[Check] = []
    for item in checks:
        data: object
        if item.lstrip().startswith("{"):
            try:
                data = yaml.safe_load(item)
            except yaml.YAMLError as exc:
                raise ConfigError(f"--check {item!r}: not a valid YAML mapping: {exc}") from exc
        else:
            kind, sep, value = item.partition("=")
            if not sep:
                raise ConfigError(f"--check {item!r}: expected KIND=VALUE, e.g. toggle=wifi")
            data = {kind.strip(): value.strip()}
        if not isinstance(data, dict):
            raise ConfigError(f"--check {item!r}: expected a mapping such as '{{toggle: wifi}}'")
        try:
            parsed.append(parse_check(data))
        except ValidationError as exc:
            raise ConfigError(f"--check {item!r}: {exc.errors()[0]['msg']} (kinds: {', '.join(CHECK_KINDS)})") from exc
    scenario = scenario_from_run(run_dir, name=name, success=parsed)
    Path(out).write_text(scenario_to_yaml(scenario), encoding="utf-8")
    click.echo(f"scenario written to {out} ({len(scenario.gold)} gold steps)")


@click.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def report(path: str) -> None:
    """Write report.html for a run directory or an evaluation directory."""
    from vlagent.report import write_report

    click.echo(str(write_report(path)))


RUN_COMMANDS: tuple[click.Command, ...] = (show, replay, record, report)
