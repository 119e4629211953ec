"""Repeated runs: success rates with intervals, pass@k and pass^k.

One run of a scenario is one sample; a rate from a handful of samples needs its interval
next to it. Formulas, with their sources:

- **Wilson score interval** (E. B. Wilson, "Probable inference, the law of succession, and
  statistical inference", JASA 22, 1927): for ``c`` successes in ``n`` runs at confidence
  ``z`` (1.96 for 95%), centre ``(p + z²/2n) / (1 + z²/n)`` and half-width
  ``z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n)``. It stays inside [0, 1] and is sane at ``c = 0``
  or ``c = n``, where the normal approximation collapses to a point.
- **pass@k**, the chance that at least one of ``k`` runs drawn from the ``n`` succeeds, with
  the unbiased estimator ``1 - C(n-c, k) / C(n, k)`` (Chen et al., "Evaluating Large Language
  Models Trained on Code", 2021).
- **pass^k**, the chance that all ``k`` drawn runs succeed, ``C(c, k) / C(n, k)`` (Yao et al.,
  "τ-bench", 2024): what a user who needs the task done every time meets.

This module is pure arithmetic: it knows nothing of scenarios or devices.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Z95", "RepeatStats", "pass_at_k", "pass_hat_k", "pooled", "repeat_stats", "wilson_interval"]

Z95 = 1.959963984540054
"""The two-sided 95% quantile of the standard normal distribution."""


def wilson_interval(successes: int, runs: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a success rate; (0.0, 1.0) when there are no runs."""
    if runs < 0 or not 0 <= successes <= runs:
        raise ValueError(f"need 0 <= successes <= runs, got {successes} of {runs}")
    if runs == 0:
        return 0.0, 1.0
    p = successes / runs
    denominator = 1 + z * z / runs
    centre = (p + z * z / (2 * runs)) / denominator
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def _check(successes: int, runs: int, k: int) -> None:
    if not 0 <= successes <= runs or not 1 <= k <= runs:
        raise ValueError(f"need 0 <= successes <= runs and 1 <= k <= runs, got c={successes}, n={runs}, k={k}")


def pass_at_k(successes: int, runs: int, k: int) -> float:
    """P(at least one of k runs drawn without replacement from n succeeds) = 1 - C(n-c, k)/C(n, k)."""
    _check(successes, runs, k)
    return 1.0 - math.comb(runs - successes, k) / math.comb(runs, k)


def pass_hat_k(successes: int, runs: int, k: int) -> float:
    """P(all of k runs drawn without replacement from n succeed) = C(c, k)/C(n, k)."""
    _check(successes, runs, k)
    return math.comb(successes, k) / math.comb(runs, k)


@dataclass(frozen=True)
class RepeatStats:
    """How one scenario (or all of them) fared over its repeats."""

    runs: int
    passed: int
    interval: tuple[float, float]
    pass_at: Mapping[int, float]
    """k -> pass@k, for k = 1..runs."""
    pass_hat: Mapping[int, float]
    """k -> pass^k, for k = 1..runs."""

    @property
    def rate(self) -> float:
        return self.passed / self.runs if self.runs else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "passed": self.passed,
            "success_rate": self.rate,
            "interval_95": list(self.interval),
            "pass_at_k": {str(k): v for k, v in self.pass_at.items()},
            "pass_hat_k": {str(k): v for k, v in self.pass_hat.items()},
        }

    def describe(self) -> str:
        """``2/3 passed (0.67, 95% CI 0.21-0.94), pass@3 1.00, pass^3 0.00``."""
        lo, hi = self.interval
        line = f"{self.passed}/{self.runs} passed ({self.rate:.2f}, 95% CI {lo:.2f}-{hi:.2f})"
        k = max(self.pass_at, default=1)
        if k > 1:
            line += f", pass@{k} {self.pass_at[k]:.2f}, pass^{k} {self.pass_hat[k]:.2f}"
        return line


def repeat_stats(outcomes: Sequence[bool]) -> RepeatStats:
    """Statistics of one scenario's repeated outcomes."""
    runs, passed = len(outcomes), sum(bool(o) for o in outcomes)
    ks = range(1, runs + 1)
    return RepeatStats(
        runs=runs,
        passed=passed,
        interval=wilson_interval(passed, runs),
        pass_at={k: pass_at_k(passed, runs, k) for k in ks},
        pass_hat={k: pass_hat_k(passed, runs, k) for k in ks},
    )


def pooled(groups: Iterable[Sequence[bool]]) -> RepeatStats:
    """All runs of all scenarios as one sample (pass@k/pass^k averaged over scenarios of equal runs)."""
    groups = [list(g) for g in groups]
    flat = [o for g in groups for o in g]
    overall = repeat_stats(flat) if flat else RepeatStats(0, 0, (0.0, 1.0), {}, {})
    sizes = {len(g) for g in groups}
    if len(sizes) != 1 or not groups:
        return RepeatStats(overall.runs, overall.passed, overall.interval, {}, {})
    per = [repeat_stats(g) for g in groups]
    (size,) = sizes
    ks = range(1, size + 1)
    return RepeatStats(
        overall.runs,
        overall.passed,
        overall.interval,
        {k: sum(p.pass_at[k] for p in per) / len(per) for k in ks},
        {k: sum(p.pass_hat[k] for p in per) / len(per) for k in ks},
    )
