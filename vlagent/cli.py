"""The ``vlagent`` command line.

The CLI is the only place that decides what users see: it configures logging, prints
progress with rich, and turns user mistakes (UserError) into a one-line message and exit
code 2 without a traceback. Options come from flags, ``VLAGENT_*`` environment variables
(e.g. ``VLAGENT_RUN_DEVICE``) or a YAML config file (``--config``), in that order of
precedence.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml

from vlagent import __version__
from vlagent.agent import Episode, Hook, StepRecord
from vlagent.drivers.base import Driver
from vlagent.errors import DeviceError, ModelError, UserError, VlagentError
from vlagent.policies.base import Policy

if TYPE_CHECKING:
    from vlagent.runner import RunResult

log = logging.getLogger("vlagent.cli")

F = TypeVar("F", bound=Callable[..., object])

EXIT_USER = 2
EXIT_FAILED = 1


class _Group(click.Group):
    """Runs commands with vlagent errors turned into messages instead of tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(EXIT_USER)
        except (DeviceError, ModelError) as exc:
            click.secho(f"failed: {type(exc).__name__}: {exc}", fg="red", err=True)
            ctx.exit(EXIT_FAILED)
        except VlagentError as exc:
            click.secho(f"failed: {exc}", fg="red", err=True)
            ctx.exit(EXIT_FAILED)


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Read a YAML config file into click's default_map (flags and env still win)."""
    path = value or os.environ.get("VLAGENT_CONFIG")
    if not path:
        return value
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of command -> options")
    ctx.default_map = {**(ctx.default_map or {}), **{k.replace("-", "_"): v for k, v in data.items()}}
    return path


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    from rich.logging import RichHandler

    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, markup=False)])


@click.group(cls=_Group, context_settings={"auto_envvar_prefix": "VLAGENT", "help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlagent")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    callback=_load_config,
    is_eager=True,
    expose_value=False,
    help="YAML file with defaults per command, e.g. 'run: {device: sim, max_steps: 30}'.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cli(verbose: int, quiet: bool) -> None:
    """Let a vision-language model drive a phone or a desktop."""
    _setup_logging(verbose, quiet)


# --------------------------------------------------------------------------- options


def _policy_options(fn: F) -> F:
    options = [
        click.option(
            "--policy",
            default="auto",
            show_default=True,
            help="auto | qwen2vl | openai | scripted | tiny | oracle (built-in tasks only).",
        ),
        click.option("--model", help="Model id or local path (qwen2vl), or served model name (openai)."),
        click.option("--base-url", help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1."),
        click.option("--api-key", help="API key for --base-url (or VLAGENT_API_KEY)."),
        click.option("--script", type=click.Path(dir_okay=False), help="YAML/JSON actions for --policy scripted."),
        click.option("--max-pixels", type=int, help="Pixel budget per image (visual tokens x 784)."),
        click.option("--min-pixels", type=int, help="Minimum pixels per image."),
        click.option("--max-images", type=int, help="At most this many images per prompt."),
        click.option("--max-tokens", type=int, help="Visual-token budget per prompt (all images)."),
        click.option(
            "--family",
            help="Model family: qwen2vl | qwen25vl | qwen3vl | uitars | uitars15 | showui (default: detected).",
        ),
        click.option("--model-device", help="Where the model runs (qwen2vl): auto | cpu | cuda | cuda:N."),
        click.option(
            "--dtype",
            type=click.Choice(["auto", "bfloat16", "float16", "float32"]),
            help="Weights dtype (qwen2vl); auto: bf16 on GPU, fp32 on CPU.",
        ),
        click.option(
            "--load-in-4bit", is_flag=True, default=None, help="4-bit weights via bitsandbytes (qwen2vl, GPU)."
        ),
        click.option(
            "--no-constrain",
            is_flag=True,
            default=None,
            help="Free-text answers parsed leniently instead of grammar-constrained JSON.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_options(fn: F) -> F:
    options = [
        click.option("--device", "-d", default="sim", show_default=True, help="sim | sim:SEED | desktop | adb:SERIAL"),
        click.option("--max-steps", type=click.IntRange(1, 10_000), default=20, show_default=True),
        click.option(
            "--out", type=click.Path(file_okay=False), default="runs", show_default=True, help="Where runs are written."
        ),
        click.option(
            "--settle-timeout",
            type=click.FloatRange(0, 60),
            default=3.0,
            show_default=True,
            help="After an action, wait up to this long for the screen to stop changing (0: no wait).",
        ),
        click.option(
            "--settle-stable",
            type=click.FloatRange(0, 10),
            default=0.3,
            show_default=True,
            help="Seconds the screen must stay unchanged to count as settled.",
        ),
        click.option(
            "--on-stuck",
            type=click.Choice(["stop", "hint"]),
            default="stop",
            show_default=True,
            help="When the same action changes nothing 3 times or screens cycle: stop, or hint the model.",
        ),
        click.option(
            "--record-nodes/--no-record-nodes",
            default=None,
            help="Record the UI element each tap aims at, so a replay finds moved targets without a model "
            "(default: on for the simulated phone; on a real phone it costs a view dump, ~1-2 s, per tap).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


# --------------------------------------------------------------------------- commands


@cli.command()
@click.argument("task")
@_run_options
@_policy_options
def run(
    task: str,
    device: str,
    max_steps: int,
    out: str,
    settle_timeout: float,
    settle_stable: float,
    on_stuck: str,
    record_nodes: bool | None,
    policy: str,
    **policy_options: object,
) -> None:
    """Run TASK (natural language, or a built-in task name) on a device.

    A built-in task (see 'vlagent devices') first brings the phone (sim or adb:SERIAL) to the
    task's start state, and its success is judged from the phone's own state afterwards."""
    from vlagent.runner import RunRequest, run_task

    request = RunRequest(
        task=task,
        device=device,
        policy=policy,
        max_steps=max_steps,
        out=Path(out),
        options=policy_options,
        settle_timeout=settle_timeout,
        settle_stable=settle_stable,
        on_stuck=on_stuck,
        record_nodes=record_nodes,
    )
    _finish(run_task(request, progress=_Progress()))


@cli.command()
@click.option("--task", default="dark_mode", show_default=True, help="Built-in sim task to run.")
@click.option("--out", type=click.Path(file_okay=False), default="runs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Layout seed of the simulated phone.")
@click.option("--model", help="Qwen2-VL weights (id or path); default: use them if present locally.")
def demo(task: str, out: str, seed: int, model: str | None) -> None:
    """Watch an agent complete a task on the simulated phone."""
    from vlagent.runner import RunRequest, demo_policy_name, run_task

    policy = demo_policy_name(model)
    click.echo(f"demo: task '{task}' on the simulated phone (seed {seed}) with the {policy} policy")
    result = run_task(
        RunRequest(
            task=task, device=f"sim:{seed}", policy=policy, max_steps=20, out=Path(out), options={"model": model}
        ),
        progress=_Progress(),
    )
    _finish(result)


def _finish(result: RunResult) -> None:
    """Print how the run was judged and where the run is; exit 1 unless the task succeeded."""
    click.echo(f"{result.summary}\nrun written to {result.run_dir}")
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@cli.command()
def devices() -> None:
    """List device kinds and the devices that can be found now."""
    from vlagent.runner import list_devices

    for line in list_devices():
        click.echo(line)


@cli.command()
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


@cli.group()
def sim() -> None:
    """The simulated phone."""


@sim.command("serve")
@click.option("--port", default=5037, show_default=True, help="Loopback port for the adb protocol.")
@click.option(
    "--serial", "serials", multiple=True, default=("sim-0",), show_default=True, help="One simulated phone per serial."
)
@click.option("--seed", default=0, show_default=True, help="Layout seed of the phones.")
@click.option("--transition-delay", default=0.0, show_default=True, help="Seconds a screen change takes to show.")
@click.option(
    "--drop-typed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Lose every Nth typed character (0: none), to test a client's read-back of typed text.",
)
def sim_serve(port: int, serials: tuple[str, ...], seed: int, transition_delay: float, drop_typed: int) -> None:
    """Serve simulated phones over the adb protocol (then: adb -P PORT devices)."""
    from vlagent.drivers.sim.adb_server import serve_forever

    click.echo(f"serving {', '.join(serials)} on 127.0.0.1:{port} (Ctrl-C to stop)", err=True)
    serve_forever(port, list(serials), seed, transition_delay, drop_typed=drop_typed)


@cli.command("eval")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True))
@_policy_options
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True, help="Scenarios at once.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/eval", show_default=True)
@click.option("--layout-seed", type=int, help="Override the simulated phone's layout seed (robustness runs).")
@click.option("--heal-policy", help="With --policy scripted: re-locate moved targets with this policy.")
@click.option(
    "--device", "-d", "device_spec", help="Run the phone scenarios on this device instead (adb:SERIAL, sim:SEED)."
)
def eval_(
    scenarios: tuple[str, ...], jobs: int, out: str, layout_seed: int | None, heal_policy: str | None,
    device_spec: str | None, policy: str, **policy_options: object,
) -> None:  # fmt: skip
    """Run scenario files (or folders of them); write results.json, junit.xml and report.html.

    Success is judged from each device's state after the episode. --device moves every phone
    scenario onto one phone, one after another: each is brought to its start state first and
    the phone is handed back as the scenario found it; desktop scenarios keep their own device."""
    from rich.progress import Progress

    from vlagent.evaluate import EvalConfig, evaluate
    from vlagent.policies.registry import open_policy
    from vlagent.scenario import load_scenarios

    if policy == "oracle":
        raise click.UsageError(
            "--policy oracle plays the built-in tasks (vlagent run TASK); "
            "replay scenarios from their gold steps with --policy scripted"
        )
    loaded = load_scenarios([Path(p) for p in scenarios])
    options = {k: v for k, v in policy_options.items() if v is not None}
    name = "scripted" if policy == "auto" else policy
    heal = open_policy(heal_policy, **options) if heal_policy else None
    config = EvalConfig(
        out=Path(out),
        policy=name,
        policy_options=options,
        jobs=jobs,
        layout_seed=layout_seed,
        heal=heal,
        device=device_spec,
    )
    with Progress(transient=True) as bar:
        task = bar.add_task("scenarios", total=len(loaded))

        def done(result: Any) -> None:
            mark = "[green]pass[/]" if result.success else "[red]FAIL[/]"
            bar.console.print(f"{mark} {result.name}  [dim]{result.end_reason}, {result.steps} steps[/]")
            bar.advance(task)

        result = evaluate(loaded, config, on_result=done)
    summary = result.summary()
    click.echo(
        f"{summary['passed']}/{summary['scenarios']} scenarios passed ({summary['errors']} errors) in "
        f"{summary['duration_s']:.1f}s\nresults: {Path(out) / 'results.json'}, {Path(out) / 'junit.xml'}, "
        f"{Path(out) / 'report.html'}"
    )
    if summary["passed"] != summary["scenarios"]:
        raise SystemExit(EXIT_FAILED)


@cli.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--device", "-d", help="Replay on this device instead of the recorded one (e.g. sim:3).")
@click.option("--heal/--no-heal", default=False, show_default=True, help="Re-locate changed targets with --policy.")
@click.option("--policy", default="qwen2vl", show_default=True, help="Policy used to heal.")
@click.option("--model", help="Model for the healing policy.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/replay", show_default=True)
def replay(source: str, device: str | None, heal: bool, policy: str, model: str | None, out: str) -> None:
    """Re-execute a recorded run directory or a scenario file; stop with a report where the screen differs."""
    from vlagent.policies.registry import open_policy

    options = {"model": model} if model else {}
    healer = open_policy(policy, **options) if heal else None
    path = Path(source)
    if path.is_file():
        from vlagent.evaluate import EvalConfig, evaluate
        from vlagent.scenario import load_scenario

        layout = int(device.split(":", 1)[1]) if device and device.startswith("sim:") else None
        result = evaluate([load_scenario(path)], EvalConfig(out=Path(out), heal=healer, layout_seed=layout))
        item = result.results[0]
        status = item.replay["status"] if item.replay else item.end_reason
        click.echo(f"{'passed' if item.success else 'FAILED'}: {status}; report {Path(out) / 'report.html'}")
        if not item.success:
            raise SystemExit(EXIT_FAILED)
        return
    from vlagent.replay import replay_run

    outcome = replay_run(path, Path(out), heal=healer, device=device)
    click.echo(
        f"replay {outcome.status} ({outcome.healed} healed)" + (f"; report {outcome.report}" if outcome.report else "")
    )
    if outcome.status == "diverged":
        raise SystemExit(EXIT_FAILED)


@cli.command()
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


@cli.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False))
def report(path: str) -> None:
    """Write report.html for a run directory or an evaluation directory."""
    from vlagent.report import write_report

    click.echo(str(write_report(path)))


class _Progress(Hook):
    """Episode hook that prints one line per step as it happens."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    def on_start(self, episode: Episode, driver: Driver, policy: Policy) -> None:
        from rich.markup import escape

        self.console.print(f"[bold]task[/]: {escape(episode.task)}  [dim]device {driver.name}, policy {policy.name}[/]")

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        from rich.markup import escape

        from vlagent.actions import describe_action

        thought = f" [dim]{escape(record.decision.step.thought)}[/]" if record.decision.step.thought else ""
        self.console.print(
            f"  step {record.index + 1:>3}  {escape(describe_action(record.action))}  "
            f"[dim]model {record.model_s:.2f}s[/]{thought}",
            markup=True,
        )

    def on_end(self, episode: Episode) -> None:
        from rich.markup import escape

        end = episode.end.value if episode.end else "error"
        self.console.print(f"[bold]end[/]: {end} {escape(episode.detail)}".rstrip())


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="vlagent")


if __name__ == "__main__":  # pragma: no cover
    main()
