"""The ``vlagent`` command line.

The CLI is the only place that decides what users see: it configures logging, prints
progress with rich, and turns user mistakes (UserError) into a one-line message and exit
code 2 without a traceback. Options come from flags, ``VLAGENT_*`` environment variables
(e.g. ``VLAGENT_RUN_DEVICE``) or a YAML config file (``--config``), in that order of
precedence.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import yaml

from vlagent import __version__
from vlagent.agent import Episode, Hook, StepRecord
from vlagent.cli_runs import RUN_COMMANDS
from vlagent.drivers.base import Driver
from vlagent.errors import DeviceError, ModelError, UserError, VlagentError
from vlagent.policies.base import Policy
from vlagent.secrets import Secrets, install_log_scrubbing, scrub

if TYPE_CHECKING:
    from vlagent.confirm import Confirm
    from vlagent.runner import RunResult

log = logging.getLogger("vlagent.cli")

F = TypeVar("F", bound=Callable[..., object])

EXIT_USER = 2
EXIT_FAILED = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143

_signalled: list[int] = []


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (and SIGHUP) end a run the way Ctrl-C does: the episode's end line is written first."""
    _signalled.append(signum)
    raise KeyboardInterrupt


def _handle_signals() -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _terminate)


def _say(prefix: str, message: str) -> None:
    click.secho(f"{prefix}{scrub(message)}", fg="red", err=True)


class _Group(click.Group):
    """Runs commands with errors turned into one-line messages instead of tracebacks.

    A user's mistake exits 2, a failed run 1, Ctrl-C 130 and SIGTERM 143; whatever else goes wrong
    (a full disk, a bug) is one line too, with the traceback in the log at -vv."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            _say("error: ", str(exc))
            ctx.exit(EXIT_USER)
        except (DeviceError, ModelError) as exc:
            _say("failed: ", f"{type(exc).__name__}: {exc}")
            ctx.exit(EXIT_FAILED)
        except VlagentError as exc:
            _say("failed: ", str(exc))
            ctx.exit(EXIT_FAILED)
        except KeyboardInterrupt:
            terminated = bool(_signalled) and _signalled[-1] != signal.SIGINT
            _say("", "terminated" if terminated else "interrupted")
            ctx.exit(EXIT_SIGTERM if terminated else EXIT_SIGINT)
        except OSError as exc:
            where = f" ({exc.filename})" if exc.filename else ""
            _say("failed: ", f"{exc.strerror or exc}{where}")
            log.debug("the OS error", exc_info=True)
            ctx.exit(EXIT_FAILED)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except Exception as exc:
            _say("failed: ", f"unexpected {type(exc).__name__}: {exc} (run with -vv for the traceback)")
            log.debug("the unexpected exception", exc_info=True)
            ctx.exit(EXIT_FAILED)


class _Repeatable(click.Option):
    """A repeatable option whose config-file value may also be one string (``device: adb:A``)."""

    def type_cast_value(self, ctx: click.Context, value: Any) -> Any:
        return super().type_cast_value(ctx, (value,) if isinstance(value, str) else value)


class _Seconds(click.ParamType):
    """A finite number within [low, high] (a duration in seconds unless ``unit`` says otherwise):
    NaN, infinities and values out of range are refused (click's FloatRange lets NaN through)."""

    name = "seconds"

    def __init__(self, low: float, high: float, unit: str = "seconds") -> None:
        self.low, self.high, self.unit = low, high, unit
        self.name = unit or "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        unit = f" {self.unit}" if self.unit else ""
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number{unit and ' of' + unit}", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not between {self.low:g} and {self.high:g}{unit}", param, ctx)
        return number


def _load_config(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Read a YAML config file into click's default_map (flags and env still win)."""
    path = value or os.environ.get("VLAGENT_CONFIG")
    if not path:
        return value
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise click.BadParameter(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x})") from None
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: expected a mapping of command -> options")
    for command, options in data.items():
        if not isinstance(options, dict):
            raise click.BadParameter(
                f"{path}: {command!r} must map option names to values (e.g. 'run: {{device: sim}}'), "
                f"not {type(options).__name__}"
            )
    ctx.default_map = {**(ctx.default_map or {}), **{k.replace("-", "_"): v for k, v in data.items()}}
    return path


def _setup_logging(verbose: int, quiet: bool) -> None:
    level = (
        logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    from rich.logging import RichHandler

    logging.basicConfig(level=level, format="%(message)s", handlers=[RichHandler(show_path=False, markup=False)])
    install_log_scrubbing()  # secrets' values and URL credentials never reach the terminal


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
    _handle_signals()


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
        click.option(
            "--base-url",
            cls=_Repeatable,
            multiple=True,
            callback=lambda ctx, param, value: value or None,
            help="OpenAI-compatible server URL, e.g. http://127.0.0.1:8000/v1; repeat it for replicas of "
            "the model: each request goes to the least busy.",
        ),
        click.option("--api-key", help="API key for --base-url (or VLAGENT_API_KEY)."),
        click.option("--script", type=click.Path(dir_okay=False), help="YAML/JSON actions for --policy scripted."),
        click.option("--max-pixels", type=click.IntRange(min=1), help="Pixel budget per image (visual tokens x 784)."),
        click.option("--min-pixels", type=click.IntRange(min=1), help="Minimum pixels per image."),
        click.option("--max-images", type=click.IntRange(min=1), help="At most this many images per prompt."),
        click.option("--max-tokens", type=click.IntRange(min=1), help="Visual-token budget per prompt (all images)."),
        click.option(
            "--family",
            help="Model family: qwen2vl | qwen25vl | qwen3vl | uitars | uitars15 | showui (default: detected).",
        ),
        click.option(
            "--temperature",
            type=_Seconds(0.0, 2.0, unit=""),
            help="Sampling temperature (qwen2vl, openai); 0 decodes greedily (the default).",
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
            "--no-history-reuse",
            is_flag=True,
            default=None,
            help="Re-size every earlier screen at every step and encode every image anew "
            "(no stable sizes, no vision-embedding cache), to compare or debug.",
        ),
        click.option(
            "--no-work-ahead",
            is_flag=True,
            default=None,
            help="Do not compute the next prompt's start while the device acts (qwen2vl): the same "
            "answers, a longer wait for each step.",
        ),
        click.option(
            "--history",
            type=click.Choice(["images", "video"]),
            help="How earlier screens reach the model: images (default) or video, the older ones in pairs "
            "as two-frame videos that cost the tokens of one image (qwen2vl, Qwen2-VL/Qwen2.5-VL models).",
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


def _secret_option() -> Callable[[F], F]:
    return click.option(
        "--secret",
        "secret_names",
        multiple=True,
        metavar="NAME",
        help="A secret the task types as {{NAME}}, read from the environment variable NAME; "
        "its value reaches only the device, never the model, the files or the logs (repeatable).",
    )


def _secrets(names: Sequence[str]) -> Secrets:
    return Secrets.from_env(names)


def _confirm(wanted: bool, apps: Sequence[str]) -> Confirm | None:
    from vlagent.confirm import Confirm, SensitiveRules, TerminalPerson

    if apps and not wanted:
        raise click.UsageError("--confirm-app needs --confirm")
    if not wanted:
        return None
    person = TerminalPerson()
    if not person.present:
        log.warning("--confirm without a terminal: sensitive actions will be refused")
    return Confirm(SensitiveRules(apps=tuple(apps)), person)


def _run_options(fn: F) -> F:
    options = [
        click.option("--device", "-d", default="sim", show_default=True, help="sim | sim:SEED | desktop | adb:SERIAL"),
        click.option("--max-steps", type=click.IntRange(1, 10_000), default=20, show_default=True),
        click.option(
            "--seed",
            "sampling_seed",
            type=click.IntRange(0, 2**31 - 1),
            help="Sampling seed, so a model with --temperature above 0 repeats its draws.",
        ),
        click.option(
            "--out", type=click.Path(file_okay=False), default="runs", show_default=True, help="Where runs are written."
        ),
        click.option(
            "--settle-timeout",
            type=_Seconds(0, 60),
            default=3.0,
            show_default=True,
            help="After an action, wait up to this long for the screen to stop changing (0: no wait).",
        ),
        click.option(
            "--settle-stable",
            type=_Seconds(0, 10),
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
        _secret_option(),
        click.option(
            "--confirm",
            "confirm",
            is_flag=True,
            help="Ask on the terminal before typing a secret or tapping pay/buy/delete/send..., and let the "
            "model hand the device over (call_user); without a terminal such actions are refused.",
        ),
        click.option(
            "--confirm-app",
            "confirm_apps",
            multiple=True,
            metavar="APP",
            help="With --confirm: also ask before any action while APP (label or package) is in front (repeatable).",
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
    secret_names: tuple[str, ...],
    confirm: bool,
    confirm_apps: tuple[str, ...],
    sampling_seed: int | None,
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
        secrets=_secrets(secret_names),
        confirm=_confirm(confirm, confirm_apps),
        seed=sampling_seed,
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
    click.echo(scrub(f"{result.summary}\nrun written to {result.run_dir}"))
    if not result.ok:
        raise SystemExit(EXIT_FAILED)


@cli.command()
def devices() -> None:
    """List device kinds and the devices that can be found now."""
    from vlagent.runner import list_devices

    for line in list_devices():
        click.echo(line)


@cli.group()
def sim() -> None:
    """The simulated phone."""


@sim.command("serve")
@click.option(
    "--port", type=click.IntRange(1, 65535), default=5037, show_default=True, help="Loopback port for the adb protocol."
)
@click.option(
    "--serial", "serials", multiple=True, default=("sim-0",), show_default=True, help="One simulated phone per serial."
)
@click.option("--seed", default=0, show_default=True, help="Layout seed of the phones.")
@click.option(
    "--transition-delay", type=_Seconds(0, 60), default=0.0, show_default=True, help="Seconds a screen change takes."
)
@click.option(
    "--drop-typed",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Lose every Nth typed character (0: none), to test a client's read-back of typed text.",
)
@click.option("--reachable", multiple=True, metavar="HOST:PORT", help="Only these answer 'adb connect' (default: any).")
def sim_serve(
    port: int, serials: tuple[str, ...], seed: int, transition_delay: float, drop_typed: int, reachable: tuple[str, ...]
) -> None:  # fmt: skip
    """Serve simulated phones over the adb protocol (then: adb -P PORT devices); 'adb connect
    HOST:PORT' attaches one more with serial HOST:PORT, as a phone with wireless debugging joins."""
    from vlagent.drivers.sim.adb_server import serve_forever

    repeated = sorted({s for s in serials if serials.count(s) > 1})
    if repeated:
        raise click.BadParameter(
            f"each phone needs its own serial; given twice: {', '.join(repeated)}", param_hint="--serial"
        )

    click.echo(f"serving {', '.join(serials)} on 127.0.0.1:{port} (Ctrl-C to stop)", err=True)
    serve_forever(port, list(serials), seed, transition_delay, drop_typed=drop_typed, reachable=reachable or None)


@cli.command("eval")
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True))
@_policy_options
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=1, show_default=True, help="Scenarios at once.")
@click.option("--out", type=click.Path(file_okay=False), default="runs/eval", show_default=True)
@click.option("--layout-seed", type=int, help="Override the simulated phone's layout seed (robustness runs).")
@click.option(
    "--seed",
    "sampling_seed",
    type=click.IntRange(0, 2**31 - 1),
    help="Sampling seed of a model with --temperature above 0; repeat r samples on seed+r (default 0).",
)
@click.option("--heal-policy", help="With --policy scripted: re-locate moved targets with this policy.")
@click.option(
    "--device",
    "-d",
    cls=_Repeatable,
    multiple=True,
    help="Run the phone scenarios on this device instead (adb:SERIAL, sim:SEED). Repeat it for a pool: each "
    "scenario takes a free device (-j N at once); adb:* is every phone adb lists, adb:HOST:PORT joins a "
    "phone on the network (adb connect).",
)
@click.option(
    "--repeats",
    type=click.IntRange(1, 1000),
    default=None,
    help="Run each scenario K times (sim: layout seeds base..base+K-1) and report pass@k, pass^k and "
    "95% intervals (default 1).",
)
@click.option(
    "--config-from",
    type=click.Path(exists=True, dir_okay=False),
    help="Run the configuration pinned in an earlier results.json (policy, options, seeds, repeats, device); "
    "flags given here still win.",
)
@click.option("--resume", is_flag=True, help="--out holds an unfinished evaluation: keep what finished, run the rest.")
@click.option("--overwrite", is_flag=True, help="--out holds an evaluation: run every scenario again, replacing it.")
@click.option(
    "--ray",
    "ray_address",
    metavar="ADDRESS",
    help="Run each episode as a Ray task: 'local' starts a cluster of -j workers for this run; auto, HOST:PORT "
    "or ray://HOST:PORT joins one. Phone scenarios on adb:SERIAL go to the node started with "
    "--resources '{\"adb:SERIAL\": 1}'. Needs vlagent[ray].",
)
@click.option(
    "--model-actors",
    type=click.IntRange(1, 1024),
    help="With --ray and a model policy: load the model in N Ray actors (one GPU each where the cluster has "
    "N GPUs) that batch the steps of all episodes, instead of in every worker.",
)
@_secret_option()
def eval_(
    scenarios: tuple[str, ...], jobs: int, out: str, layout_seed: int | None, sampling_seed: int | None,
    heal_policy: str | None, device: tuple[str, ...], repeats: int | None, config_from: str | None, resume: bool,
    overwrite: bool, ray_address: str | None, model_actors: int | None, secret_names: tuple[str, ...], policy: str,
    **policy_options: object,
) -> None:  # fmt: skip
    """Run scenario files (or folders of them); write results.json, junit.xml and report.html.

    Success is judged from each device's state after the episode. --device moves every phone
    scenario onto one phone, one after another: each is brought to its start state first and
    the phone is handed back as the scenario found it; desktop scenarios keep their own device.
    Several --device make a pool: a phone that drops off leaves it (results.json 'pool')."""
    from rich.progress import Progress

    from vlagent.evaluate import EvalConfig, evaluate
    from vlagent.policies.registry import open_policy
    from vlagent.scenario import load_scenarios

    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    if policy == "oracle":
        raise click.UsageError(
            "--policy oracle plays the built-in tasks (vlagent run TASK); "
            "replay scenarios from their gold steps with --policy scripted"
        )
    loaded = load_scenarios([Path(p) for p in scenarios])
    options = {k: v for k, v in policy_options.items() if v is not None}
    if config_from:
        from vlagent.pinned import eval_options_from

        pinned = eval_options_from(config_from)
        options = {**pinned["policy_options"], **options}
        policy = pinned["policy"] if policy == "auto" else policy
        layout_seed = pinned["layout_seed"] if layout_seed is None else layout_seed
        sampling_seed = pinned["sampling_seed"] if sampling_seed is None else sampling_seed
        repeats = pinned["repeats"] if repeats is None else repeats
        device = device or tuple(pinned["devices"])
    name = "scripted" if policy == "auto" else policy
    heal = open_policy(heal_policy, **options) if heal_policy else None
    config = EvalConfig(
        out=Path(out),
        policy=name,
        policy_options=options,
        jobs=jobs,
        layout_seed=layout_seed,
        heal=heal,
        devices=device,
        existing="resume" if resume else "overwrite" if overwrite else "refuse",
        secrets=_secrets(secret_names),
        repeats=repeats or 1,
        sampling_seed=sampling_seed or 0,
    )
    with Progress(transient=True) as bar:
        task = bar.add_task("scenarios", total=len(loaded))

        def done(result: Any) -> None:
            mark = "[green]pass[/]" if result.success else "[red]FAIL[/]"
            bar.console.print(f"{mark} {result.name}  [dim]{result.end_reason}, {result.steps} steps[/]")
            bar.advance(task)

        executor = None
        if model_actors and not ray_address:
            raise click.UsageError("--model-actors needs --ray")
        if ray_address:
            from vlagent.distributed import RayExecutor

            executor = RayExecutor(ray_address, model_actors=model_actors or 0)
        result = evaluate(loaded, config, on_result=done, executor=executor)
    summary = result.summary()
    low, high = summary["interval_95"]
    for name, stats in summary.get("repeats", {}).get("per_scenario", {}).items():
        lo, hi = stats["interval_95"]
        k = str(stats["runs"])
        rate = f"{stats['success_rate']:.2f}, 95% CI {lo:.2f}-{hi:.2f}"
        click.echo(
            f"{name}: {stats['passed']}/{stats['runs']} passed ({rate}), "
            f"pass@{k} {stats['pass_at_k'][k]:.2f}, pass^{k} {stats['pass_hat_k'][k]:.2f}"
        )
    click.echo(
        f"{summary['passed']}/{summary['scenarios']} {'runs' if 'repeats' in summary else 'scenarios'} passed "
        f"({summary['errors']} errors; success rate "
        f"{summary['success_rate']:.2f}, 95% CI {low:.2f}-{high:.2f}) in {summary['duration_s']:.1f}s\n"
        f"results: {Path(out) / 'results.json'}, {Path(out) / 'junit.xml'}, {Path(out) / 'report.html'}"
    )
    if summary["passed"] != summary["scenarios"]:
        raise SystemExit(EXIT_FAILED)


@cli.command("eval-steps")
@click.argument("dataset", type=click.Choice(["aitw", "androidcontrol"]))
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@_policy_options
@click.option("--out", type=click.Path(file_okay=False), default="runs/eval-steps", show_default=True)
@click.option(
    "--level",
    type=click.Choice(["high", "low"]),
    default="high",
    show_default=True,
    help="AndroidControl: the goal alone (high), or the goal and each step's instruction (low).",
)
@click.option("--max-episodes", type=click.IntRange(min=1), help="Stop after this many episodes.")
@click.option(
    "--split",
    metavar="FILE:LABEL",
    help="Only the episodes listed under LABEL in a split file (JSON: label -> episode ids), e.g. splits.json:test.",
)
@click.option("--batch", type=click.IntRange(1, 256), default=1, show_default=True, help="Steps per model call.")
@click.option("--overwrite", is_flag=True, help="--out holds a step-level evaluation: replace it.")
def eval_steps(
    dataset: str, files: tuple[str, ...], out: str, level: str, max_episodes: int | None, split: str | None,
    batch: int, overwrite: bool, policy: str, **policy_options: object,
) -> None:  # fmt: skip
    """Score a policy step by step on published dataset files: AITW or AndroidControl TFRecords.

    Each step is asked on the dataset's screenshot with the gold steps before it as history
    (teacher forcing) and scored by the dataset's reference rules: AITW's action matching;
    OS-Atlas's and Qwen's AndroidControl rules. --policy gold (or oracle, or the default auto)
    answers the gold itself: 100% checks the files and the scoring. No TensorFlow is needed."""
    from rich.progress import Progress

    from vlagent.datasets import read_split
    from vlagent.stepeval import StepEvalConfig, StepOutcome, evaluate_steps

    episode_ids = None
    if split is not None:
        split_file, sep, label = split.rpartition(":")
        if not sep or not split_file or not label:
            raise click.BadParameter("expected FILE:LABEL, e.g. splits.json:test", param_hint="--split")
        episode_ids = read_split(split_file, label)
    config = StepEvalConfig(
        dataset="aitw" if dataset == "aitw" else "androidcontrol",
        files=[Path(f) for f in files],
        out=Path(out),
        policy=policy,
        policy_options={k: v for k, v in policy_options.items() if v is not None},
        level="low" if level == "low" else "high",
        max_episodes=max_episodes,
        episode_ids=episode_ids,
        batch=batch,
        overwrite=overwrite,
    )
    with Progress(transient=True) as bar:
        steps = bar.add_task("steps", total=None)

        def scored(outcome: StepOutcome) -> None:
            bar.advance(steps)

        result = evaluate_steps(config, on_step=scored)
    summary: dict[str, Any] = result.summary
    click.echo(
        f"{dataset} ({level} level): {summary['episodes']} episodes, {summary['steps']} steps, "
        f"{summary['invalid_answers']} invalid answers, {summary['duration_s']:.1f}s"
    )
    click.echo(f"{'convention':<22}{'type':>8}{'grounding':>11}{'step':>8}{'episode':>9}{'steps':>7}")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    for name, s in summary["scores"].items():
        click.echo(
            f"{name:<22}{pct(s['type_accuracy']):>8}{pct(s['grounding_accuracy']):>11}"
            f"{pct(s['step_success_rate']):>8}{pct(s['episode_success_rate']):>9}{s['steps']:>7}"
        )
    click.echo("step success by gold action type:")
    for name, kinds in summary["per_action_type"].items():
        parts = ", ".join(f"{kind} {pct(k['step_success_rate'])} ({k['steps']})" for kind, k in kinds.items())
        click.echo(f"  {name}: {parts}")
    click.echo(f"results: {Path(out) / 'results.json'}, {Path(out) / 'steps.jsonl'}, {Path(out) / 'report.html'}")


for _command in RUN_COMMANDS:
    cli.add_command(_command)


class _Progress(Hook):
    """Episode hook that prints one line per step as it happens."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)

    def on_start(self, episode: Episode, driver: Driver, policy: Policy) -> None:
        from rich.markup import escape

        names = f"device {escape(driver.name)}, policy {escape(scrub(policy.name))}"
        self.console.print(f"[bold]task[/]: {escape(scrub(episode.task))}  [dim]{names}[/]")

    def on_decision(self, episode: Episode, record: StepRecord) -> None:
        from rich.markup import escape

        from vlagent.actions import describe_action

        thought = f" [dim]{escape(scrub(record.decision.step.thought))}[/]" if record.decision.step.thought else ""
        self.console.print(
            f"  step {record.index + 1:>3}  {escape(scrub(describe_action(record.action)))}  "
            f"[dim]model {record.model_s:.2f}s[/]{thought}",
            markup=True,
        )

    def on_end(self, episode: Episode) -> None:
        from rich.markup import escape

        end = episode.end.value if episode.end else "error"
        self.console.print(f"[bold]end[/]: {end} {escape(scrub(episode.detail))}".rstrip())


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="vlagent")


if __name__ == "__main__":  # pragma: no cover
    main()
