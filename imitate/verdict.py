"""The verdict of `imitate compare`, in sentences, from the numbers: which heads keep the modes, keep
them in part, collapse onto one or average them; which runs overfit; whether seeds or rollouts are
too few for the differences to mean much. The thresholds are stated here and on the report's page.
"""
from __future__ import annotations

from typing import Any

import numpy as np


#: Thresholds of the verdict. In rollouts (tasks that report their modes) a head collapses onto one
#: mode when its behaviour entropy is below COLLAPSE_ENTROPY, and keeps the modes when it is at
#: least KEEP_ENTROPY with mode shares within KEEP_GAP percentage points of the demonstrations'.
#: From the data (no rollouts), it keeps them when its coverage is at least KEEP_COVERAGE. Either
#: way, a head that has not collapsed averages the modes when its energy distance is not below that
#: of the demonstrations' mean.
KEEP_ENTROPY, KEEP_GAP, COLLAPSE_ENTROPY, KEEP_COVERAGE = 0.5, 25.0, 0.2, 0.7
#: A run overfits when its last two validation losses both exceed the minimum of its validation
#: curve by more than OVERFIT_RISE of the fall from the first validation loss to that minimum.
OVERFIT_RISE = 0.1
#: Fewer seeds, or fewer rollouts per run, and the report warns that differences may be noise.
ENOUGH_SEEDS, ENOUGH_EPISODES = 3, 20
_GROUPS = {"keeps": ("keeps", "keep", "the modes"), "partly": ("keeps", "keep", "them only in part"),
           "collapses": ("collapses", "collapse", "onto one mode"), "averages": ("averages", "average", "them")}


def overfitting(val_curve: list) -> dict[str, float] | None:
    """``{"best_step", "best", "last_step", "last", "rise"}`` when the validation loss rose clearly
    from its minimum (see OVERFIT_RISE; rise is a share of the earlier fall), else None.

    ``val_curve``: [[step, validation loss], ...] in step order, as the compare runs record it."""
    if len(val_curve) < 4:
        return None
    steps, losses = np.asarray(val_curve, float).T
    i = int(np.argmin(losses))
    fall = losses[0] - losses[i]
    if i >= len(losses) - 2 or fall <= 0:
        return None
    margin = OVERFIT_RISE * fall
    if not (losses[-2:] > losses[i] + margin).all():
        return None
    return {"best_step": int(steps[i]), "best": float(losses[i]), "last_step": int(steps[-1]),
            "last": float(losses[-1]), "rise": float((losses[-1] - losses[i]) / fall)}


def _mean(summary: dict, key: str) -> float | None:
    stat = summary.get(key)
    return None if stat is None else stat["mean"]


def _judge(summary: dict, baseline_ed: float | None, with_modes: bool) -> tuple[str, str]:
    """(group, evidence) of one head: group is a key of `_GROUPS`."""
    ent, gap = _mean(summary, "behaviour_entropy"), _mean(summary, "mode_share_gap")
    cov, ed, success = _mean(summary, "coverage"), _mean(summary, "energy_distance"), _mean(summary, "success_rate")
    averages = ed is not None and baseline_ed is not None and ed >= baseline_ed
    evidence = []
    if with_modes and ent is not None:
        evidence.append(f"behaviour entropy {ent:.2f}" + (f", mode share gap {gap:.0f} points" if gap is not None else ""))
        if ent < COLLAPSE_ENTROPY:
            group = "collapses"
        elif averages:       # both modes in closed loop, yet its actions are no closer than their mean
            group = "averages"
        elif ent >= KEEP_ENTROPY and (gap is None or gap <= KEEP_GAP):
            group = "keeps"
        else:
            group = "partly"
    elif averages:
        group = "averages"
    else:
        group = "keeps" if cov is not None and cov >= KEEP_COVERAGE else "partly"
    if cov is not None:
        evidence.append(f"coverage {cov:.2f}")
    if ed is not None:
        evidence.append(f"energy distance {ed:.3f}" + (f", not below the mean of the demonstrations' {baseline_ed:.3f}"
                                                       if averages else ""))
    if success is not None and success < 0.5:
        evidence.append(f"success only {success:.2f}")
    return group, ", ".join(evidence)


def _names(heads: list[str]) -> str:
    return heads[0] if len(heads) == 1 else ", ".join(heads[:-1]) + " and " + heads[-1]


def verdict(results: dict) -> dict[str, Any]:
    """What the numbers say, in sentences: which heads keep the modes and which collapse or average
    them (with the thresholds used), which runs overfit, and whether the budget is too small for
    the differences to be more than noise. ``text`` holds the sentences; the groups the head names."""
    s, d = results["settings"], results["data"]
    rollouts = bool(d["env_id"] and s["episodes"])
    with_modes = rollouts and len(d["mode_shares"]) > 1
    baseline_ed = results["baseline_demo_mean"].get("energy_distance")
    groups: dict[str, list[str]] = {g: [] for g in _GROUPS}
    evidence = []
    for head, v in results["heads"].items():
        group, why = _judge(v["summary"], baseline_ed, with_modes)
        groups[group].append(head)
        evidence.append(f"{head}: {why}")
    said = [f"{_names(hs)} {_GROUPS[g][0 if len(hs) == 1 else 1]} {_GROUPS[g][2]}" for g, hs in groups.items() if hs]
    text = ["Verdict: " + "; ".join(said) + ".", "Evidence: " + "; ".join(evidence) + "."]
    if with_modes:
        text.append(f"Thresholds: in rollouts a head keeps the modes when its behaviour entropy is at least "
                    f"{KEEP_ENTROPY:.2f} and its mode shares are within {KEEP_GAP:.0f} points of the demonstrations'; "
                    f"it collapses onto one mode below an entropy of {COLLAPSE_ENTROPY:.2f}; otherwise it averages "
                    f"them when its energy distance is not below that of the demonstrations' mean.")
    else:
        text.append(f"Thresholds (no rollouts with modes, so from the data alone): a head keeps the modes when its "
                    f"coverage is at least {KEEP_COVERAGE:.2f} and its energy distance is below that of the "
                    f"demonstrations' mean; it averages them when its energy distance is not below that mean's.")
    overfit = [{"head": h, "seed": seed, **o} for h, v in results["heads"].items()
               for seed, r in enumerate(v["runs"]) if (o := r.get("overfitting"))]
    for o in overfit:
        text.append(f"Overfitting: {o['head']} seed {o['seed']}: its validation loss rose from {o['best']:.3f} at "
                    f"step {o['best_step']} to {o['last']:.3f} at step {o['last_step']} ({100 * o['rise']:.0f}% of its "
                    f"earlier fall; flagged above {100 * OVERFIT_RISE:.0f}%): fewer steps or more demonstrations.")
    small = s["seeds"] < ENOUGH_SEEDS or (rollouts and s["episodes"] < ENOUGH_EPISODES)
    caveat = None
    if small:
        budget = f"{s['seeds']} seed{'s' if s['seeds'] > 1 else ''}" + \
            (f" and {s['episodes']} rollouts per run" if rollouts else "")
        caveat = (f"Caution: with {budget}, differences between heads may be noise; rerun with at least "
                  f"{ENOUGH_SEEDS} seeds" + (f" and {ENOUGH_EPISODES} episodes" if rollouts else "")
                  + " before relying on them.")
        text.append(caveat)
    return {**groups, "overfitting": overfit, "caveat": caveat, "text": text,
            "thresholds": {"keep_entropy": KEEP_ENTROPY, "keep_gap": KEEP_GAP, "collapse_entropy": COLLAPSE_ENTROPY,
                           "keep_coverage": KEEP_COVERAGE, "overfit_rise": OVERFIT_RISE}}
