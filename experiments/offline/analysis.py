"""The offline experiment's analysis (:mod:`experiments.offline`): success and return of BC, %BC and the Decision
Transformer per dataset, the return DT achieves against the return it is asked for, and what the logged data cost
beside PPO's online episodes; from ``results.json`` alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.curves import first_crossing
from experiments.offline.variants import METHODS, datasets, method_variant
from experiments.report import NO_LEARNING, budget_note, closing_lines, join, learning_sentence
from experiments.runs.baselines import UNTRAINED_BC
from experiments.summary import (
    COUNT, RATE, UNTRAINED, cost_rows, find, learning_rows, markdown_table, not_improved, rows_of, summary_row, value,
)

METRIC = "success rate"
HEADLINE = ("final success rate",)
ASKED = "return achieved, asking for {:.0%} of the best return in the data"
PPO_COST = "PPO training episodes to the same success (online)"
DATA_SUCCESS = "success rate of the logged episodes"


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    untrained = {r["seed"]: r for r in runs if r["variant"] == UNTRAINED_BC}
    data = {r["variant"].removeprefix("dataset-"): r for r in runs if r["variant"].startswith("dataset-")}
    ppo = sorted((r for r in runs if r["variant"] == "ppo"), key=lambda r: r["seed"])
    for mixture in datasets(budget):
        if mixture in data:
            d = data[mixture]
            rows.append(summary_row(mixture, DATA_SUCCESS, "data", [d["success_rate"]],
                                    bounds=RATE))
            rows.append(summary_row(mixture, "mean return of the logged episodes", "data", [d["mean_return"]],
                                    bounds=RATE))
            rows.append(summary_row(mixture, "logged episodes", "data", [d["episodes"]], "{:,.0f}", bounds=COUNT))
        for method in METHODS:
            v = method_variant(method, mixture)
            rs = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])
            if not rs:
                continue
            final = [r["success_rate"] for r in rs]
            rows.append(summary_row(mixture, f"final {METRIC}", v, final, bounds=RATE))
            rows += learning_rows(mixture, METRIC, v, [untrained[r["seed"]]["success_rate"] if r["seed"] in untrained
                                                       else None for r in rs], final)
            rows.append(summary_row(mixture, "final mean return", v, [r["mean_return"] for r in rs], bounds=RATE))
            rows.append(summary_row(mixture, "episodes learned from (kept)", v,
                                    [r.get("kept_episodes", r["demos"]) for r in rs], "{:,.0f}", bounds=COUNT))
            rows += cost_rows(mixture, v, rs, [("labels consumed, with repeats", "labels_seen")])
            if method == "dt":
                for fraction in budget["dt_targets"]:
                    for key, what in (("mean_return", ASKED), ("success_rate", "success, asking for {:.0%} of the "
                                                                               "best return in the data")):
                        rows.append(summary_row(mixture, what.format(fraction), v,
                                                [_asked(r, fraction, key) for r in rs], bounds=RATE))
            if ppo:  # what PPO paid online for the success this learner reached offline
                reach = sum(final) / len(final)
                row = summary_row(mixture, PPO_COST, v, [first_crossing(p["curve"], "episodes", "success_rate", reach)
                                                         for p in ppo], "{:,.0f}", bounds=COUNT,
                                  note=f"PPO's curve read at {reach:.3f}, this learner's mean success")
                rows.append(row)
    if ppo:
        final = [r["final_metric"] for r in ppo]
        rows.append(summary_row("online", f"final {METRIC}", "ppo", final, bounds=RATE))
        rows += learning_rows("online", METRIC, "ppo", [r["curve"][0]["success_rate"] for r in ppo], final)
        rows.append(summary_row("online", "training episodes played", "ppo", [r["episodes"] for r in ppo], "{:,.0f}",
                                bounds=COUNT))
        rows += cost_rows("online", "ppo", ppo, [("environment steps", "steps")])
    return rows


def _asked(run: dict[str, Any], fraction: float, key: str) -> float | None:
    return next((t[key] for t in run.get("targets", []) if abs(t["fraction"] - fraction) < 1e-9), None)


# ------------------------------------------------------------------------------------------------------ plots
def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, summary = results["budget"], results["summary"]
    mixtures = datasets(budget)
    styles = {"bc": plots.Style("#2ca02c"), "pbc": plots.Style("#17becf"), "dt": plots.Style("#9467bd")}
    out = [plots.grouped_bars(
        mixtures, {METHODS[m]: ([find(summary, f"final {METRIC}", method_variant(m, x)) for x in mixtures], styles[m])
                   for m in METHODS},
        plot_dir / "success_by_dataset.png", "success rate (fresh episodes)",
        f"{budget['level']}: learning from logged episodes, expert-only to mostly noise ({results['mode']} mode; dots: "
        "seeds; whiskers: 95% Student-t)")]
    fig, (ax,) = plots.figure(1)
    best = {r["variant"].removeprefix("dataset-"): r["best_return"] for r in results["runs"]
            if r["variant"].startswith("dataset-")}
    colours = plots.PALETTE  # a fixed colour per dataset (a comparison within one paradigm)
    for i, mixture in enumerate(mixtures):
        rows = [find(summary, ASKED.format(f), method_variant("dt", mixture)) for f in budget["dt_targets"]]
        if not any(r and r["n"] for r in rows) or mixture not in best:
            continue
        asked = [f * best[mixture] for f in budget["dt_targets"]]
        means = [r["mean"] if r and r["n"] else float("nan") for r in rows]
        color = colours[i % len(colours)]
        ax.plot(asked, means, marker="o", color=color, linewidth=2, label=f"{mixture} data (mean over seeds)")
        ax.fill_between(asked, [r["ci_low"] if r and r["n"] else float("nan") for r in rows],
                        [r["ci_high"] if r and r["n"] else float("nan") for r in rows], color=color, alpha=0.15,
                        linewidth=0)
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.9, label="achieved = asked")
    ax.set_xlabel("return asked for (the first return-to-go; the best in the data x the target's fraction)")
    ax.set_ylabel("return achieved (mean over fresh episodes)")
    ax.set_title(f"Decision Transformer: return achieved against return asked ({results['mode']} mode; band: 95% "
                 "Student-t over seeds)", fontsize=11)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    plots.legend_below(ax)
    out.append(plots.save(fig, plot_dir / "dt_return_asked_vs_achieved.png"))
    return out


# ----------------------------------------------------------------------------------------------------- report
def takeaway(results: dict[str, Any]) -> str:
    summary, budget = results["summary"], results["budget"]
    sentences = []
    for mixture in datasets(budget):
        finals = {m: find(summary, f"final {METRIC}", method_variant(m, mixture)) for m in METHODS}
        data = data_success(summary, mixture)
        said = [f"{m.upper() if m != 'pbc' else '%BC'} {value(r)}" for m, r in finals.items() if r]
        if said:
            sentences.append(f"On the {mixture} data ({value(data)} of its episodes succeed)"
                             if data else f"On the {mixture} data")
            sentences[-1] += f" the success rate is {join(said)}."
    noisiest = budget["mixtures"][-1]
    ppo_cost = find(summary, PPO_COST, method_variant("dt", noisiest))
    if ppo_cost and ppo_cost["n"]:
        episodes = find(summary, "episodes learned from (kept)", method_variant("dt", noisiest))
        sentences.append(f"On the {noisiest} data DT learned its success from {value(episodes)} logged episodes; "
                         f"PPO reached the same success online after {value(ppo_cost)} training episodes.")
    return " ".join(sentences) or "No run finished."


def data_success(summary: list[dict[str, Any]], mixture: str) -> dict[str, Any] | None:
    """The success rate of the ``mixture`` dataset's logged episodes (its row), or None."""
    return next((r for r in summary if r["quantity"] == DATA_SUCCESS and r["section"] == mixture), None)


def limits(results: dict[str, Any]) -> list[str]:
    summary, budget = results["summary"], results["budget"]
    out = []
    for change in not_improved(summary):
        v = change["variant"]
        data = data_success(summary, change["section"])
        reading = NO_LEARNING
        if v == method_variant("bc", change["section"]) and data:  # BC ends near its data's success at any budget
            reading = (f"It copies every logged action, and {value(data)} of the logged episodes succeed: near that "
                       "is where cloning them ends, whatever the budget.")
        out.append(learning_sentence(v, find(summary, f"{UNTRAINED} {METRIC}", v), find(summary, f"final {METRIC}", v),
                                     change, reading=reading))
    for mixture in datasets(budget):
        v = method_variant("dt", mixture)
        reach = find(summary, f"final {METRIC}", v)
        if reach and reach["n"]:
            row = find(summary, PPO_COST, v)
            if row is not None and not row["n"]:
                out.append(f"PPO did not reach DT's success on the {mixture} data ({reach['mean']:.3f}) within "
                           f"{budget['rl_steps']:,} steps: its online cost is only a lower bound.")
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary, settings = results["budget"], results["summary"], results["settings"]
    full = results["full_budget"]
    composed = "; ".join(f"{m}: " + ", ".join(f"{n:,} {s}" for s, n in d["sources"].items()) + f" (`{d['id']}`)"
                         for m, d in settings["datasets"].items())
    note = budget_note(
        results,
        f"level {budget['level']}; datasets of {budget['episodes']:,} episodes ({composed}), written as Minari "
        + (f"datasets, and the user's {', '.join(f'`{d}`' for d in budget['minari_datasets'])}"
           if budget.get("minari_datasets") else "datasets")
        + f"; BC, %BC (top {budget['top_fraction']:.0%} of episodes by return) and the Decision Transformer "
        f"(asked for the best return in its data, then for {', '.join(f'{f:.0%}' for f in budget['dt_targets'])} of "
        f"it) for {budget['epochs']:g} passes but at least {budget['min_steps']:,} steps; PPO online for "
        f"{budget['rl_steps']:,} steps, evaluated every {budget['eval_every']:,}; every success rate on "
        f"{budget['eval_episodes']} fresh episodes the data never saw, sampled actions; seeds "
        f"{', '.join(map(str, results['seeds']))}.",
        f"Quick mode is small (a few hundred episodes per dataset); `--full` uses {full['episodes']:,} episodes per "
        f"dataset and {full['rl_steps']:,} PPO steps.")
    labels = {method_variant(m, x): METHODS[m] for m in METHODS for x in datasets(budget)}
    return "\n".join([
        "## Learning from logged trajectories: BC, %BC and the Decision Transformer (offline) vs PPO (online)",
        "",
        "**Takeaway.** " + takeaway(results),
        "",
        "The data are episodes of behaviour policies of known quality with their returns (BabyAI: 1 - 0.9 x steps / "
        "max steps on success, 0 otherwise). Behaviour cloning copies every logged action; %BC copies only the "
        "best episodes by return; the Decision Transformer (the lab's causal decoder over return-to-go, state and "
        "action tokens, each state read by the same fusion encoder) is trained like a supervised model on every "
        "episode but acts asked for a return. PPO learns online from the reward alone.",
        "",
        note,
        "",
        *[line for mixture in datasets(budget) if rows_of(summary, mixture) for line in (
            f"### The {mixture} data", "", markdown_table(rows_of(summary, mixture), labels=labels), "")],
        "### PPO online (the reward-only reference)",
        markdown_table(rows_of(summary, "online"), labels={"ppo": "PPO"}),
        "",
        *closing_lines(plot_paths, limits(results)),
    ])


def tensorboard_layout(results: dict[str, Any]) -> dict[str, Any]:
    from lab import tags

    return {f"{results['experiment']}: learning from logged episodes on {results['budget']['level']}": [
        ("success rate on fresh episodes (PPO: x = environment steps; offline learners: one point each)",
         [f"^{tags.SUCCESS_RATE}$"]),
    ]}
