"""The report of `imitate compare`: a verdict in sentences, a table (head x metric, mean ± std over
seeds) and plots.

The verdict (`verdict`, also in results.json) is computed from the numbers with the thresholds
stated below and on the page: which heads keep the modes, keep them in part, collapse onto one or
average them; which runs overfit (`overfitting`); whether seeds or rollouts are too few.

    DIR/report.md     the table and the plots (DIR/plots/*.png, referenced by relative path)
    DIR/report.html   the same page, self-contained: every image is a data: URI, no external resource

Plots (matplotlib, Agg, no pyplot state): success / entropy / coverage / energy-distance bars;
sampled vs demonstrated actions (the last executed action of each chunk) at the states where the
demonstrations disagree most (scatter for 2-D actions, marginals otherwise); rollout trajectories
over the task's scene for tasks that draw themselves (``plot_scene(ax)`` and ``agent_xy(obs)`` on the
environment); the input images at those states when the data has image keys; training curves.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

import numpy as np

from imitate.verdict import overfitting, verdict  # noqa: F401 (part of the report's interface)

_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c"]
_FORMAT = {"success_rate": "{:.2f}", "behaviour_entropy": "{:.2f}", "mode_share_gap": "{:.0f}",
           "energy_distance": "{:.3f}", "mmd": "{:.3f}", "coverage": "{:.2f}", "mean_return": "{:.1f}",
           "train_time_s": "{:.0f}", "latency_ms": "{:.2f}", "val_loss": "{:.3f}"}


def _fmt(key: str, stat: dict | None, with_std: bool = True) -> str:
    if stat is None:
        return "–"
    if key == "params":
        return f"{stat['mean'] / 1e6:.2f}M" if stat["mean"] >= 1e5 else f"{stat['mean'] / 1e3:.1f}k"
    f = _FORMAT.get(key, "{:.2f}")
    return f.format(stat["mean"]) + (" ± " + f.format(stat["std"]) if with_std and len(stat["values"]) > 1 else "")


def _columns(results: dict) -> list[tuple[str, str, str]]:
    """(key, label, better) of every column that has a value for some head."""
    heads = results["heads"].values()
    cols = [(k, m["label"], m["better"]) for k, m in results["metrics"].items()]
    extra = sorted({k for h in heads for k in h["summary"] if k.startswith(("share/", "episode/"))})
    cols += [(k, k.split("/", 1)[1] + (" share" if k.startswith("share/") else ""), "") for k in extra]
    return [c for c in cols if any(h["summary"].get(c[0]) for h in heads)]


#: The columns whose best value is marked: how well a head imitates. Return, training time,
#: parameters and latency are shown with their direction but not marked, so that the bold never
#: names a head best for being small or fast.
RANKED = ("success_rate", "behaviour_entropy", "mode_share_gap", "energy_distance", "mmd", "coverage")


def table_rows(results: dict) -> tuple[list[str], list[list[str]]]:
    """The report's table: header and rows (heads, then the demonstrations and their mean), best
    value of each column in `RANKED` in ** **."""
    cols = _columns(results)
    heads = results["heads"]
    best = {}
    for key, _, better in cols:
        means = {h: v["summary"][key]["mean"] for h, v in heads.items() if v["summary"].get(key)}
        if better and key in RANKED and len(means) > 1:
            best[key] = (max if better == "higher" else min)(means.values())
    rows = []
    for h, v in heads.items():
        row = [h]
        for key, _, _ in cols:
            text = _fmt(key, v["summary"].get(key))
            stat = v["summary"].get(key)
            row.append(f"**{text}**" if stat and key in best and np.isclose(stat["mean"], best[key]) else text)
        rows.append(row)
    d, base = results["data"], results["baseline_demo_mean"]
    demo = {"success_rate": d["success_rate"], "behaviour_entropy": d["behaviour_entropy"], "mean_return": d["mean_return"],
            "mode_share_gap": 0.0 if d["mode_shares"] else None,
            **{f"share/{m}": s for m, s in d["mode_shares"].items()}}
    rows.append(["demonstrations"] + [_fmt(k, {"mean": demo[k], "std": 0, "values": [0]})
                                      if demo.get(k) is not None else "" for k, _, _ in cols])
    rows.append(["mean of demonstrations"] + [_fmt(k, {"mean": base[k], "std": 0, "values": [0]}) if k in base else ""
                                              for k, _, _ in cols])
    arrows = {"higher": " ↑", "lower": " ↓", "": ""}
    return ["head"] + [label + arrows[b] for _, label, b in cols], rows


# -- numbers --------------------------------------------------------------------------------------
RESULTS_FORMAT = "imitate-compare/1"
#: Metrics of the report's table: key, label, which direction is better.
METRICS = [("success_rate", "success", "higher"), ("behaviour_entropy", "behaviour entropy", "higher"),
           ("mode_share_gap", "mode share gap (points)", "lower"), ("energy_distance", "energy distance", "lower"),
           ("mmd", "MMD", "lower"), ("coverage", "coverage", "higher"), ("mean_return", "return", "higher"),
           ("train_time_s", "train time (s)", "lower"), ("params", "parameters", ""),
           ("latency_ms", "latency (ms)", "lower")]


def _mean_std(values: list) -> dict[str, Any] | None:
    values = [float(v) for v in values if v is not None]
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values)), "values": values}


def summarize(settings: dict, heads: list[str], head_settings: dict, encoder_settings: dict, store, env_id: str | None,
              runs: dict, baseline: dict) -> dict[str, Any]:
    """results.json: per head, each metric's mean ± std over seeds and every run's numbers; the
    demonstrations' own mode shares, success and entropy; the demonstration-mean baseline."""
    routes = [a["route"] for a in store.demo_attrs if "route" in a]
    demo_shares = {r: routes.count(r) / len(routes) for r in sorted(set(routes))}
    ok = [bool(a["is_success"]) for a in store.demo_attrs if "is_success" in a]
    per_head = {}
    for head in heads:
        rs = [runs[(head, s)] for s in range(settings["seeds"])]
        for r in rs:
            if demo_shares and r.get("mode_shares"):
                modes = set(demo_shares) | set(r["mode_shares"])
                r["mode_share_gap"] = 100 * max(abs(r["mode_shares"].get(m, 0.0) - demo_shares.get(m, 0.0))
                                                for m in modes)
        summary = {key: _mean_std([r.get(key) for r in rs]) for key, _, _ in METRICS}
        for mode in demo_shares:
            summary[f"share/{mode}"] = _mean_std([r["mode_shares"].get(mode, 0.0) for r in rs if r.get("mode_shares")])
        for key in sorted({k for r in rs for k in (r.get("episode_metrics") or {})}):
            summary[f"episode/{key}"] = _mean_std([(r.get("episode_metrics") or {}).get(key) for r in rs])
        summary["val_loss"] = _mean_std([r.get("val_loss") for r in rs])
        per_head[head] = {"settings": head_settings[head], "summary": summary,
                          "runs": [{**{k: v for k, v in r.items() if k not in ("plot_samples", "trajectories",
                                                                                "train_curve", "val_curve", "_cached")},
                                    "overfitting": overfitting(r.get("val_curve") or [])} for r in rs]}
    n_modes = max(len(demo_shares), 1)
    p = np.array(list(demo_shares.values())) if demo_shares else np.array([1.0])
    results = {"format": RESULTS_FORMAT, "settings": settings, "encoder_settings": encoder_settings,
               "data": {"path": str(Path(settings["data"]).resolve()), "env_id": env_id, "demos": store.n_episodes,
                        "transitions": len(store), "valid_demos": len(store.filter_keys.get("valid", [])),
                        "mode_shares": demo_shares, "success_rate": float(np.mean(ok)) if ok else None,
                        "mean_return": float(np.add.reduceat(store.get("rewards", np.arange(len(store))),
                                                             store.episode_starts).mean()) if "rewards" in store.keys else None,
                        "behaviour_entropy": float(-(p * np.log(p)).sum() / np.log(n_modes)) if n_modes > 1 else None},
               "baseline_demo_mean": baseline, "metrics": {k: {"label": label, "better": b} for k, label, b in METRICS},
               "heads": per_head}
    results["verdict"] = verdict(results)
    return results


# -- plots ----------------------------------------------------------------------------------------
def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=90, layout="constrained")


def _bars(results: dict, path: Path) -> None:
    keys = [(k, results["metrics"][k]["label"]) for k in ("success_rate", "behaviour_entropy", "coverage",
                                                           "energy_distance")
            if any(h["summary"].get(k) for h in results["heads"].values())]
    heads = list(results["heads"])
    fig = _figure(3.2 * len(keys), 3.2)
    for ax, (key, label) in zip(fig.subplots(1, len(keys), squeeze=False)[0], keys):
        stats = [results["heads"][h]["summary"].get(key) for h in heads]
        x = np.arange(len(heads))
        ax.bar(x, [s["mean"] if s else 0 for s in stats], yerr=[s["std"] if s else 0 for s in stats],
               color=[_COLORS[i % len(_COLORS)] for i in x], capsize=3)
        for i, s in enumerate(stats):
            if s:
                ax.scatter([i] * len(s["values"]), s["values"], s=8, color="k", zorder=3)
        ref = {"behaviour_entropy": (results["data"]["behaviour_entropy"], "demonstrations"),
               "energy_distance": (results["baseline_demo_mean"]["energy_distance"], "mean of demos"),
               "coverage": (results["baseline_demo_mean"]["coverage"], "mean of demos")}.get(key)
        if ref and ref[0] is not None:
            ax.axhline(ref[0], ls="--", color="0.3", lw=1, label=ref[1])
            ax.legend(fontsize=7, loc="best")
        ax.set_xticks(x, heads, rotation=30, ha="right", fontsize=8)
        ax.set_title(label, fontsize=10)
    fig.savefig(path)


def _samples(results: dict, runs: dict, reference: dict, path: Path) -> None:
    heads = list(results["heads"])
    demo = np.asarray(reference["actions"])                        # (S, k, A)
    n_states, a_dim = demo.shape[0], demo.shape[-1]
    per_head = {h: np.asarray(runs[(h, 0)]["plot_samples"]) for h in heads}   # (S, M, A), seed 0
    if a_dim == 2:
        fig = _figure(2.4 * (len(heads) + 1), 2.4 * n_states)
        axes = fig.subplots(n_states, len(heads) + 1, squeeze=False, sharex=True, sharey=True)
        for s in range(n_states):
            for c, name in enumerate(["demonstrations"] + heads):
                ax = axes[s, c]
                pts = demo[s] if c == 0 else per_head[name][s]
                ax.scatter(pts[:, 0], pts[:, 1], s=10 if c == 0 else 5, alpha=0.9 if c == 0 else 0.4,
                           color="k" if c == 0 else _COLORS[(c - 1) % len(_COLORS)])
                if c:
                    ax.scatter(demo[s][:, 0], demo[s][:, 1], s=6, color="k", marker="x", lw=0.6)
                if s == 0:
                    ax.set_title(name, fontsize=9)
                if c == 0:
                    obs = ", ".join(f"{k}={np.round(v[s], 2).tolist()}" for k, v in reference["obs"].items()
                                    if np.size(v[s]) <= 16)              # low-dim keys only, never images
                    ax.set_ylabel(f"state {s + 1}\naction[1]", fontsize=8)
                    ax.annotate(obs, (0.02, 0.02), xycoords="axes fraction", fontsize=6)
        fig.supxlabel(f"action[0] (last executed action of the chunk, n_act = {results['settings']['n_act']}; "
                      "x = demonstrated)", fontsize=9)
    else:
        dims = min(a_dim, 4)
        fig = _figure(2.8 * dims, 2.2 * n_states)
        axes = fig.subplots(n_states, dims, squeeze=False)
        for s in range(n_states):
            for d in range(dims):
                ax = axes[s, d]
                lo = min(demo[s][:, d].min(), *(per_head[h][s][:, d].min() for h in heads))
                hi = max(demo[s][:, d].max(), *(per_head[h][s][:, d].max() for h in heads))
                bins = np.linspace(lo - 1e-6, hi + 1e-6, 25)
                ax.hist(demo[s][:, d], bins=bins, density=True, color="0.75", label="demonstrations")
                for i, h in enumerate(heads):
                    ax.hist(per_head[h][s][:, d], bins=bins, density=True, histtype="step",
                            color=_COLORS[i % len(_COLORS)], label=h)
                ax.set_title(f"state {s + 1}, action[{d}]", fontsize=8)
        axes[0, 0].legend(fontsize=6)
    fig.savefig(path)


def _trajectories(results: dict, runs: dict, reference: dict, env, path: Path) -> bool:
    heads = [h for h in results["heads"] if runs[(h, 0)].get("trajectories")]
    if env is None or not heads:
        return False
    modes = list(results["data"]["mode_shares"]) or list(getattr(env, "modes", ()))
    color = {m: _COLORS[i % len(_COLORS)] for i, m in enumerate(modes)}
    panels = [("demonstrations", reference.get("demo_trajectories", []))] if reference.get("demo_trajectories") else []
    panels += [(h, runs[(h, 0)]["trajectories"]) for h in heads]
    fig = _figure(max(2.8 * len(panels), 6.0), 3.6)
    for ax, (name, trajs) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        env.plot_scene(ax)
        for t in trajs:
            xy = np.asarray(t["xy"])
            failed = t.get("success") is False
            ax.plot(xy[:, 0], xy[:, 1], lw=0.7, alpha=0.7, ls="--" if failed else "-",
                    color="#d62728" if failed else color.get(t.get("mode"), "0.4"))
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    _trajectory_legend(fig, color, panels)
    fig.suptitle("rollouts, seed 0: each line is one episode, coloured by the mode it took", fontsize=10)
    fig.savefig(path)
    return True


def _trajectory_legend(fig, color: dict[str, str], panels: list) -> None:
    """A legend below the panels: which colour is which mode, and what failed or unlabelled lines are."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2.5, label=f"mode {m}") for m, c in color.items()]
    trajs = [t for _, ts in panels for t in ts]
    if any(t.get("success") is False for t in trajs):
        handles.append(Line2D([], [], color="#d62728", lw=2, ls="--", label="failed episode"))
    if any(t.get("success") is not False and color.get(t.get("mode")) is None for t in trajs):
        handles.append(Line2D([], [], color="0.4", lw=2.5, label="mode not recorded"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 5), fontsize=10,
                   frameon=False)


def input_frames(frames: dict[str, np.ndarray], path: Path) -> bool:
    """A strip of the policy's input images at the plotted states: one row per state, per image key
    the To frames of its window (oldest first), at their own resolution; False when there are none.

    ``frames``: image key -> (S, To, H, W, C) uint8, as `imitate.compare.compare` passes them."""
    frames = {k: np.asarray(v) for k, v in (frames or {}).items() if np.asarray(v).ndim == 5 and len(v)}
    if not frames:
        return False
    n_states = min(len(v) for v in frames.values())
    columns = [(k, t) for k, v in frames.items() for t in range(v.shape[1])]
    fig = _figure(1.6 * len(columns), 1.7 * n_states)
    axes = fig.subplots(n_states, len(columns), squeeze=False)
    for s in range(n_states):
        for c, (key, t) in enumerate(columns):
            ax = axes[s, c]
            img = frames[key][s, t]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None,
                      vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if s == 0:
                lag = frames[key].shape[1] - 1 - t
                ax.set_title(f"{key}, t{f'-{lag}' if lag else ''}", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"state {s + 1}", fontsize=8)
    fig.savefig(path)
    return True


def _curves(results: dict, runs: dict, path: Path) -> None:
    heads = list(results["heads"])
    seeds = results["settings"]["seeds"]
    fig = _figure(2.8 * len(heads), 2.6)
    for i, (ax, h) in enumerate(zip(fig.subplots(1, len(heads), squeeze=False)[0], heads)):
        for s in range(seeds):
            r = runs[(h, s)]
            if r.get("train_curve"):
                c = np.asarray(r["train_curve"])
                ax.plot(c[:, 0], c[:, 1], color=_COLORS[i % len(_COLORS)], lw=0.8, label="train" if s == 0 else None)
            if r.get("val_curve"):
                c = np.asarray(r["val_curve"])
                ax.plot(c[:, 0], c[:, 1], color="k", ls="--", lw=0.8, label="valid" if s == 0 else None)
        ax.set_title(h, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=6)
    fig.supylabel("loss (each head its own)", fontsize=8)
    fig.savefig(path)


# -- pages ----------------------------------------------------------------------------------------
_DEFS = [("energy distance", "2E|X−Y| − E|X−X′| − E|Y−Y′| between a head's action samples and the demonstrated "
          "actions at held-out states (0 = same distribution)"),
         ("MMD", "squared maximum mean discrepancy, RBF kernel, median-heuristic bandwidth"),
         ("coverage", "share of demonstrated actions with a sampled action inside their 3-nearest-neighbour ball "
          "(1: every mode reached; about 0.5: one of two modes; 0: a mean between modes)"),
         ("behaviour entropy", "entropy of the modes of successful rollouts / log(number of modes)"),
         ("mode share gap", "largest difference, in percentage points, between a head's mode shares and the "
          "demonstrations'"),
         ("mean of demonstrations", "always acting with the mean of the demonstrated actions: what averaging scores")]


def _intro(results: dict) -> list[str]:
    s, d = results["settings"], results["data"]
    env = f"rollouts in `{d['env_id']}`, {s['episodes']} per run" if d["env_id"] and s["episodes"] else "no rollouts"
    shares = ", ".join(f"{m} {v:.2f}" for m, v in d["mode_shares"].items()) or "not recorded"
    return [f"Data: `{d['path']}` ({d['demos']} demonstrations, {d['transitions']} steps; mode shares {shares}).",
            f"Budget per run: {s['steps']} steps, batch {s['batch_size']}, To = {s['obs_horizon']}, "
            f"Ta = {s['action_horizon']}, n_act = {s['n_act']}; seeds 0..{s['seeds'] - 1}; {env}.",
            f"Data metrics: {s['queries']} held-out states, {s['samples']} samples per head, demonstrated actions "
            f"from the {s['neighbours']} nearest demonstrations; the first n_act actions of each chunk are compared.",
            "Table: mean ± std over seeds; ↑ higher is better, ↓ lower is better; the best value in bold on the "
            "columns that measure imitation (success, behaviour entropy, mode share gap, energy distance, MMD, "
            "coverage), not on return, training time, parameters or latency."]


def write_report(results: dict[str, Any], runs: dict, reference: dict, out_dir: str | Path, env=None) -> dict[str, str]:
    """Write plots/, report.md and report.html into ``out_dir``; return their paths.

    Args:
        results: what `imitate.compare.compare` writes to results.json.
        runs: (head, seed) -> the run's measurements (with plot_samples, trajectories, curves).
        reference: ``obs`` (low-dim keys) and demonstrated ``actions`` (S, k, A) at the plotted states (the
            last executed action of each chunk), ``frames`` (image key -> (S, To, H, W, C) uint8 windows at
            those states, drawn as a strip), ``demo_trajectories``.
        env: the task (unwrapped) when it draws itself (``plot_scene``), else None.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    out_dir = Path(out_dir)
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    figures = []
    if any(k in h["summary"] and h["summary"][k] for h in results["heads"].values()
           for k in ("success_rate", "coverage")):
        _bars(results, plots / "metrics.png")
        figures.append(("Success and coverage", "metrics.png"))
    _samples(results, runs, reference, plots / "action_samples.png")
    figures.append(("Sampled vs demonstrated actions (seed 0) at the states where the demonstrations disagree most",
                    "action_samples.png"))
    if input_frames(reference.get("frames"), plots / "input_frames.png"):
        figures.append(("Input frames at those states (the policy's image window, from the data)", "input_frames.png"))
    if _trajectories(results, runs, reference, env, plots / "trajectories.png"):
        figures.append(("Rollout trajectories", "trajectories.png"))
    _curves(results, runs, plots / "training_curves.png")
    figures.append(("Training curves", "training_curves.png"))

    header, rows = table_rows(results)
    intro = _intro(results)
    said = results.get("verdict") or verdict(results)
    md = ["# Which head keeps the modes? — imitate compare", "", *[f"{line}  " for line in intro], "",
          "## Verdict", "", *[f"{line}  " for line in said["text"]], "",
          "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    md += ["", *[f"- **{name}**: {text}" for name, text in _DEFS], ""]
    for title, name in figures:
        md += [f"## {title}", "", f"![{title}](plots/{name})", ""]
    md += ["Every number, per run: `results.json`. Run directories: `runs/<head>/seed<k>` "
           "(`imitate eval runs/<head>/seed0`)."]
    (out_dir / "report.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    def cell(text: str, tag: str) -> str:
        bold = text.startswith("**")
        text = html.escape(text.strip("*"))
        return f"<{tag}>{'<b>' + text + '</b>' if bold else text}</{tag}>"

    def inline(text: str) -> str:
        return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))

    body = ["<h1>Which head keeps the modes? — imitate compare</h1>", *[f"<p>{inline(x)}</p>" for x in intro],
            "<h2>Verdict</h2>", *[f"<p>{inline(x)}</p>" for x in said["text"]],
            "<table><tr>" + "".join(cell(h, "th") for h in header) + "</tr>",
            *["<tr>" + "".join(cell(c, "td") for c in r) + "</tr>" for r in rows], "</table>",
            "<ul>" + "".join(f"<li><b>{html.escape(n)}</b>: {html.escape(t)}</li>" for n, t in _DEFS) + "</ul>"]
    for title, name in figures:
        data = base64.b64encode((plots / name).read_bytes()).decode()
        body += [f"<h2>{html.escape(title)}</h2>", f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">']
    body.append("<p>Every number, per run: results.json. Run directories: runs/&lt;head&gt;/seed&lt;k&gt;.</p>")
    style = ("body{font-family:sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}th{background:#f0f0f0}"
             "img{max-width:100%}")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>imitate compare</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
    (out_dir / "report.html").write_text(page, encoding="utf-8")
    return {"md": str(out_dir / "report.md"), "html": str(out_dir / "report.html"),
            "plots": [str(plots / name) for _, name in figures]}
