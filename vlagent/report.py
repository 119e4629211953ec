"""Static HTML reports: one light page per run, one index per evaluation.

A run page lists every step: a JPEG thumbnail of the frame (an external file, loaded
lazily; never inline base64) with the action drawn on it (a ring for a click, an arrow for
a swipe or scroll), the action, the thought, timings and the visible effect, under a
header with the task and the end reason. Thumbnails are made once and reused, so a
1000-step run renders in seconds and opens instantly. The index summarises results.json.

This module only reads run directories and results; it must not run anything.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlagent.actions import SCROLL_FINGER, Action, Click, LongPress, Scroll, Swipe, describe_action
from vlagent.errors import UserError
from vlagent.secrets import scrub
from vlagent.trajectory import RecordedStep, Trajectory, load_trajectory

__all__ = [
    "STEP_ROWS",
    "THUMB_SIDE",
    "draw_action",
    "write_eval_report",
    "write_report",
    "write_run_report",
    "write_steps_report",
]

log = logging.getLogger(__name__)

#: Longest side of a thumbnail in pixels.
THUMB_SIDE = 360

_CSS = """
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#222}
header{background:#263238;color:#fff;padding:12px 20px}
header h1{font-size:18px;margin:0 0 4px} header p{margin:2px 0;font-size:13px}
main{display:flex;flex-wrap:wrap;gap:12px;padding:16px}
.step{background:#fff;border-radius:6px;box-shadow:0 1px 3px #0002;width:260px;font-size:12px;overflow:hidden}
.step img{width:100%;height:auto;display:block;background:#ddd}
.step div{padding:6px 8px} code{font-size:12px;color:#0d47a1}
.thought{color:#555;font-style:italic} .t{color:#777}
.ok{color:#2e7d32;font-weight:bold} .bad{color:#c62828;font-weight:bold}
table{border-collapse:collapse;margin:16px;background:#fff;font-size:13px}
td,th{border-bottom:1px solid #ddd;padding:6px 10px;text-align:left}
"""


def _points(action: Action, size: tuple[int, int]) -> tuple[tuple[float, float], tuple[float, float] | None] | None:
    if isinstance(action, (Click, LongPress)):
        return (action.x, action.y), None
    if isinstance(action, Swipe):
        return (action.x1, action.y1), (action.x2, action.y2)
    if isinstance(action, Scroll):
        width, height = size
        x = action.x if action.x is not None else width / 2
        y = action.y if action.y is not None else height / 2
        dx, dy = SCROLL_FINGER[action.direction]
        return (x, y), (x + dx * width * 0.25, y + dy * height * 0.25)
    return None


def draw_action(image: Image.Image, action: Action, size: tuple[int, int]) -> Image.Image:
    """``image`` (any scale of a ``size`` screen) with the action drawn: ring for taps, arrow for swipes."""
    found = _points(action, size)
    if found is None:
        return image
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    sx, sy = out.width / size[0], out.height / size[1]
    r = max(6, round(min(out.size) * 0.04))
    line = max(2, r // 3)
    (x0, y0), end = found
    px, py = x0 * sx, y0 * sy
    if end is None:
        draw.ellipse((px - r, py - r, px + r, py + r), outline=(229, 57, 53), width=line)
        draw.ellipse((px - line, py - line, px + line, py + line), fill=(229, 57, 53))
        return out
    qx, qy = end[0] * sx, end[1] * sy
    draw.line((px, py, qx, qy), fill=(30, 136, 229), width=line)
    # arrow head: two short strokes back from the tip
    import math

    angle = math.atan2(qy - py, qx - px)
    for side in (-0.5, 0.5):
        hx = qx - r * 1.4 * math.cos(angle + side)
        hy = qy - r * 1.4 * math.sin(angle + side)
        draw.line((qx, qy, hx, hy), fill=(30, 136, 229), width=line)
    draw.ellipse((px - line * 1.5, py - line * 1.5, px + line * 1.5, py + line * 1.5), fill=(30, 136, 229))
    return out


def _thumbnail(traj: Trajectory, step: RecordedStep, thumbs: Path) -> str:
    name = f"thumbs/step_{step.index:04d}.jpg"
    target = thumbs / f"step_{step.index:04d}.jpg"
    source = traj.frame_path(step)
    if target.exists() and source.exists() and target.stat().st_mtime >= source.stat().st_mtime:
        return name
    with Image.open(source) as image:
        image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at reduced size, much faster
        small = image.convert("RGB")
        small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    draw_action(small, step.action, step.frame_size).save(target, format="JPEG", quality=75)
    return name


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def write_run_report(run_dir: Path | str, *, title: str | None = None, extra: str = "") -> Path:
    """Write ``report.html`` (and ``thumbs/``) into a run directory; return the page's path."""
    run_dir = Path(run_dir)
    traj = load_trajectory(run_dir)
    thumbs = run_dir / "thumbs"
    thumbs.mkdir(exist_ok=True)
    cards = []
    for step in traj.steps:
        thumb = _thumbnail(traj, step, thumbs) if traj.frame_path(step).exists() else ""
        thought = f'<p class="thought">{html.escape(step.thought)}</p>' if step.thought else ""
        effect = f" · {html.escape(step.effect)}" if step.effect else ""
        usage = " · ".join(f"{k} {v:g}" for k, v in step.usage.items() if k.endswith("tokens"))
        cards.append(
            f'<section class="step" id="s{step.index}"><a href="{html.escape(step.frame)}">'
            f'<img loading="lazy" src="{thumb}" alt="step {step.index + 1}"></a><div>'
            f"<b>{step.index + 1}.</b> <code>{html.escape(describe_action(step.action))}</code>{thought}"
            f'<p class="t">capture {_fmt(step.capture_s)} · model {_fmt(step.model_s)} · act {_fmt(step.execute_s)}'
            f"{effect}{' · ' + usage if usage else ''}</p></div></section>"
        )
    task = traj.start.task if traj.start else "(unknown task)"
    end = traj.end
    end_text = f"{end.reason}" + (f": {html.escape(end.detail)}" if end.detail else "") if end else "did not finish"
    duration = f" · {end.duration_s:.1f} s" if end else ""
    device = (
        f" · device {html.escape(traj.start.device)} · policy {html.escape(traj.start.policy)}" if traj.start else ""
    )
    page = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>{html.escape(title or task)}</title>'
        f"<style>{_CSS}</style><header><h1>{html.escape(title or task)}</h1><p>Task: {html.escape(task)}</p>"
        f"<p>End: <b>{end_text}</b> · {len(traj.steps)} steps{duration}{device}</p>{extra}</header>"
        f"<main>{''.join(cards)}</main></html>\n"
    )
    path = run_dir / "report.html"
    path.write_text(scrub(page), encoding="utf-8")
    return path


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


_MARKS = {"passed": "✔", "failed": "✘", "unknown": "?"}


def _check_html(check: dict[str, Any]) -> str:
    """One judged check: mark, condition, status, what was seen and where it was read."""
    status = check.get("status") or ("passed" if check["passed"] else "failed")
    source = f" <small>[{html.escape(check['source'])}]</small>" if check.get("source") else ""
    return (
        f"<p>{_MARKS.get(status, '?')} {html.escape(check['check'])} <b>{html.escape(status)}</b>"
        f" {html.escape(check['detail'])}{source}</p>"
    )


def write_eval_report(out: Path | str) -> Path:
    """Write ``report.html`` for an evaluation directory (reads results.json) and each run's page."""
    out = Path(out)
    try:
        data: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
        summary = data["summary"]
        _ = (summary["passed"], summary["scenarios"], summary["scores"], data["scenarios"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{out / 'results.json'} is not an evaluation's results ({type(exc).__name__}: {exc})") from exc
    rows = []
    for r in data["scenarios"]:
        run_dir = Path(r["run_dir"])
        link = html.escape(r["name"])
        verdict = '<span class="ok">PASS</span>' if r["success"] else '<span class="bad">FAIL</span>'
        replay = r.get("replay") or {}
        note = ""
        if replay.get("divergence_report"):
            note = f'<a href="{html.escape(replay["divergence_report"])}">divergence</a>'
        elif replay.get("healed"):
            note = f"{replay['healed']} step(s) self-healed"
        if (run_dir / "trajectory.jsonl").exists():
            extra = "".join(_check_html(c) for c in r["checks"])
            write_run_report(run_dir, title=r["name"], extra=extra)
            link = f'<a href="{html.escape(run_dir.name)}/report.html">{link}</a>'
        qwen = r["scores"].get("qwen", {})
        rows.append(
            f"<tr><td>{link}</td><td>{verdict}</td><td>{html.escape(r['end_reason'])}</td><td>{r['steps']}</td>"
            f"<td>{_pct(qwen.get('step_success_rate'))}</td><td>{r['timings'].get('duration_s', 0):.2f}s</td>"
            f"<td>{note or html.escape((r.get('error') or '')[:120])}</td></tr>"
        )
    scores = "".join(
        f"<tr><td>{name}</td><td>{_pct(s['type_accuracy'])}</td><td>{_pct(s['grounding_accuracy'])}</td>"
        f"<td>{_pct(s['step_success_rate'])}</td><td>{s['steps']}</td></tr>"
        for name, s in summary["scores"].items()
    )
    interval = summary.get("interval_95")
    ci = f", 95% CI {_pct(interval[0])}-{_pct(interval[1])}" if interval else ""
    repeats = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{r['passed']}/{r['runs']}</td><td>{_pct(r['success_rate'])} "
        f"({_pct(r['interval_95'][0])}-{_pct(r['interval_95'][1])})</td><td>{_pct(r['pass_at_k'][str(r['runs'])])}</td>"
        f"<td>{_pct(r['pass_hat_k'][str(r['runs'])])}</td></tr>"
        for name, r in summary.get("repeats", {}).get("per_scenario", {}).items()
    )
    if repeats:
        repeats = (
            "<table><tr><th>scenario</th><th>passed</th><th>success rate (95% CI)</th><th>pass@k</th>"
            f"<th>pass^k</th></tr>{repeats}</table>"
        )
    page = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>vlagent evaluation</title><style>{_CSS}</style>'
        f"<header><h1>Evaluation: {summary['passed']}/{summary['scenarios']} scenarios passed "
        f"({_pct(summary['success_rate'])}{ci})</h1>"
        f"<p>{summary['duration_s']:.1f} s · {summary['errors']} errors</p></header>{repeats}"
        "<table><tr><th>scenario</th><th>result</th><th>end</th><th>steps</th><th>step success (qwen)</th>"
        f"<th>time</th><th>notes</th></tr>{''.join(rows)}</table>"
        "<table><tr><th>convention</th><th>type accuracy</th><th>grounding accuracy</th><th>step success rate</th>"
        f"<th>steps</th></tr>{scores}</table></html>\n"
    )
    path = out / "report.html"
    path.write_text(scrub(page), encoding="utf-8")
    return path


def write_report(path: Path | str) -> Path:
    """``vlagent report DIR``: an evaluation index when DIR has results.json, else a run page."""
    path = Path(path)
    if (path / "results.json").exists() and (path / "steps.jsonl").exists():
        return write_steps_report(path)
    if (path / "results.json").exists():
        return write_eval_report(path)
    return write_run_report(path)


#: Steps listed on a step-level evaluation's page at most (steps.jsonl holds them all).
STEP_ROWS = 2000


def _steps_rows(path: Path, conventions: list[str]) -> tuple[list[str], int]:
    from vlagent.actions import ACTION_ADAPTER

    rows: list[str] = []
    total = 0
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            total += 1
            if len(rows) >= STEP_ROWS:
                continue
            s = json.loads(line)
            gold = describe_action(ACTION_ADAPTER.validate_python(s["gold_action"]))
            predicted = describe_action(ACTION_ADAPTER.validate_python(s["predicted"])) if s["predicted"] else "-"
            marks = "".join(
                f"<td>{'<span class=ok>✔</span>' if s['match'][c]['success'] else '<span class=bad>✘</span>'}</td>"
                for c in conventions
            )
            details = "; ".join(f"{c}: {s['match'][c]['detail']}" for c in conventions if s["match"][c]["detail"])
            raw = (s.get("raw") or "")[:300]
            episode = html.escape(str(s["episode"]))
            rows.append(
                f"<tr><td>{episode}</td><td>{s['step'] + 1}</td><td>{html.escape(s['kind'])}</td>"
                f"<td><code>{html.escape(gold)}</code></td><td><code>{html.escape(predicted)}</code></td>{marks}"
                f"<td>{html.escape(details)}</td><td><small>{html.escape(raw)}</small></td></tr>"
            )
    return rows, total


def write_steps_report(out: Path | str) -> Path:
    """Write ``report.html`` for a step-level evaluation directory (results.json + steps.jsonl)."""
    out = Path(out)
    try:
        data: dict[str, Any] = json.loads((out / "results.json").read_text(encoding="utf-8"))
        summary, config = data["summary"], data["config"]
        conventions: list[str] = list(summary["conventions"])
        rows, total = _steps_rows(out / "steps.jsonl", conventions)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{out} does not hold a step-level evaluation ({type(exc).__name__}: {exc})") from exc
    scores = "".join(
        f"<tr><td>{html.escape(c)}</td><td>{_pct(s['type_accuracy'])}</td><td>{_pct(s['grounding_accuracy'])}</td>"
        f"<td>{_pct(s['step_success_rate'])}</td><td>{_pct(s['episode_success_rate'])}</td><td>{s['steps']}</td></tr>"
        for c, s in summary["scores"].items()
    )
    kinds = sorted({k for per in summary["per_action_type"].values() for k in per})
    per_kind = "".join(
        f"<tr><td>{html.escape(k)}</td>"
        + "".join(
            f"<td>{_pct(summary['per_action_type'][c].get(k, {}).get('step_success_rate'))}"
            f" ({summary['per_action_type'][c].get(k, {}).get('steps', 0)})</td>"
            for c in conventions
        )
        + "</tr>"
        for k in kinds
    )
    heads = "".join(f"<th>{html.escape(c)}</th>" for c in conventions)
    more = f"<p>First {len(rows)} of {total} steps; steps.jsonl has them all.</p>" if total > len(rows) else ""
    state = " · interrupted" if summary.get("interrupted") else ""
    state += f" · stopped by {html.escape(summary['stopped_by'])}" if summary.get("stopped_by") else ""
    page = (
        f'<!doctype html><html lang="en"><meta charset="utf-8"><title>vlagent step evaluation</title>'
        f"<style>{_CSS}</style><header><h1>Step-level evaluation: {html.escape(summary['dataset'])}"
        f" ({html.escape(summary['level'])} level), policy {html.escape(str(config.get('policy')))}</h1>"
        f"<p>{summary['episodes']} episodes · {summary['steps']} steps · {summary['invalid_answers']} invalid answers"
        f" · {summary['duration_s']:.1f} s{state}</p></header>"
        "<table><tr><th>convention</th><th>type accuracy</th><th>grounding accuracy</th><th>step success rate</th>"
        f"<th>episode success rate</th><th>steps</th></tr>{scores}</table>"
        f"<table><tr><th>gold action type</th>{heads}</tr>{per_kind}</table>{more}"
        f"<table><tr><th>episode</th><th>step</th><th>type</th><th>gold</th><th>predicted</th>{heads}"
        f"<th>detail</th><th>raw answer</th></tr>{''.join(rows)}</table></html>\n"
    )
    path = out / "report.html"
    path.write_text(scrub(page), encoding="utf-8")
    return path
