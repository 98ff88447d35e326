"""The ladder's analysis (:mod:`experiments.ladder`): per level, the demonstrations behaviour cloning needed and the
episodes PPO needed to reach and hold the target success, beside the BabyAI paper's; from ``results.json`` alone."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from envs.babyai import PAPER_99
from experiments.curves import first_crossing, first_read
from experiments.report import budget_note, closing_lines, join, learning_sentence
from experiments.summary import (
    COUNT, RATE, cost_rows, find, format_cell, learning_rows, markdown_table, not_improved, rows_of, summary_row, value,
)

METRIC = "success rate"
DEMOS, EPISODES = "demonstrations to the target", "training episodes to the target"
HEADLINE = (DEMOS, EPISODES)


def short(level: str) -> str:
    return level.removeprefix("BabyAI-").removesuffix("-v0")


def bc_points(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A BC search's success against its demonstration count (one BC run per count)."""
    return [{"demos": p["demos"], "success_rate": p["success_rate"]} for p in run["points"]]


def summarize(runs: list[dict[str, Any]], budget: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    target = budget["target"]
    for level in budget["levels"]:
        name, paper = short(level), PAPER_99[level]
        bc = sorted((r for r in runs if r["variant"] == f"bc-{name}"), key=lambda r: r["seed"])
        ppo = sorted((r for r in runs if r["variant"] == f"ppo-{name}"), key=lambda r: r["seed"])
        il_ref = f"BabyAI paper: {paper['il'][0]:,}-{paper['il'][1]:,} demos"
        rl_ref = f"BabyAI paper: {paper['rl'][0]:,}-{paper['rl'][1]:,} episodes"
        if bc:
            v = f"bc-{name}"
            rows.append(summary_row(name, DEMOS, v, [first_crossing(bc_points(r), "demos", "success_rate", target)
                                                     for r in bc], "{:,.0f}", reference=il_ref, bounds=COUNT))
            rows.append(summary_row(name, "demonstrations, first single read at the target", v,
                                    [first_read(bc_points(r), "demos", "success_rate", target) for r in bc],
                                    "{:,.0f}", bounds=COUNT))
            rows.append(summary_row(name, "largest demonstration count tried", v, [r["demos"] for r in bc], "{:,.0f}",
                                    bounds=COUNT))
            rows.append(summary_row(name, f"{METRIC} at the largest count tried", v, [r["success_rate"] for r in bc],
                                    bounds=RATE))
            rows += cost_rows(name, v, bc, [("labelled steps at the largest count", "demo_steps")])
        if ppo:
            v = f"ppo-{name}"
            rows.append(summary_row(name, EPISODES, v, [first_crossing(r["curve"], "episodes", "success_rate", target)
                                                        for r in ppo], "{:,.0f}", reference=rl_ref, bounds=COUNT))
            rows.append(summary_row(name, "training episodes, first single read at the target", v,
                                    [first_read(r["curve"], "episodes", "success_rate", target) for r in ppo],
                                    "{:,.0f}", bounds=COUNT))
            rows.append(summary_row(name, "environment steps to the target", v,
                                    [first_crossing(r["curve"], "steps", "success_rate", target) for r in ppo],
                                    "{:,.0f}", bounds=COUNT))
            final = [r["final_metric"] for r in ppo]
            rows.append(summary_row(name, f"final {METRIC}", v, final, bounds=RATE))
            rows += learning_rows(name, METRIC, v, [r["curve"][0]["success_rate"] if r["curve"][0]["steps"] == 0
                                                    else None for r in ppo], final)
            rows.append(summary_row(name, "training episodes played", v, [r["episodes"] for r in ppo], "{:,.0f}",
                                    bounds=COUNT))
            rows += cost_rows(name, v, ppo, [("environment steps played", "steps")])
    return rows


# ------------------------------------------------------------------------------------------------------ plots
def plot(results: dict[str, Any], plot_dir: Path) -> list[Path]:
    from experiments import plots

    budget, summary, runs = results["budget"], results["summary"], results["runs"]
    levels = [level for level in budget["levels"] if any(r["variant"].endswith(short(level)) for r in runs)]
    fig, (ax,) = plots.figure(1, height=6.0, width_per_panel=max(2.2 * len(levels), 8))
    im, rl = plots.style_for("imitation"), plots.style_for("ppo")
    labelled: set[str] = set()

    def once(label: str) -> str | None:  # each legend entry once
        new = label not in labelled
        labelled.add(label)
        return label if new else None

    for i, level in enumerate(levels):
        name, paper = short(level), PAPER_99[level]
        for offset, kind, style, what, quantity, variant in (
                (-0.17, "il", im, "behaviour cloning: demonstrations", DEMOS, f"bc-{name}"),
                (0.17, "rl", rl, "PPO: training episodes", EPISODES, f"ppo-{name}")):
            low, high = paper[kind]
            ax.fill_between([i + offset - 0.12, i + offset + 0.12], low, high, color=style.color, alpha=0.22,
                            linewidth=0, label=once(f"BabyAI paper, {what} (published)"))
            row = find(summary, quantity, variant)
            reached = row["values"] if row else []
            for x, value_ in zip(_spread(i + offset, len(reached)), reached):
                if value_ is not None:
                    ax.scatter([x], [value_], color=style.color, marker=style.marker, s=36, zorder=3,
                               label=once(f"this lab, {what} (a dot per seed)"))
            for x, bound in zip(_spread(i + offset, len(reached)), _not_reached_at(results, variant)):
                if bound is not None:  # not reached within the budget: at least this much
                    ax.scatter([x], [bound], color=style.color, marker="^", s=40, facecolors="none", zorder=3,
                               label=once(f"this lab, {what}: not reached, at least (a triangle per seed)"))
    ax.set_xlim(-0.5, len(levels) - 0.5)
    ax.set_yscale("log")
    ax.set_xticks(range(len(levels)), [short(level) for level in levels])
    ax.set_ylabel(f"to {budget['target']:.0%} success (log scale)")
    ax.set_title(f"The BabyAI ladder: demonstrations (BC) and training episodes (PPO) to {budget['target']:.0%} "
                 f"success, held at the next evaluation ({results['mode']} mode)", fontsize=11)
    ax.grid(alpha=0.3, which="both", axis="y")
    plots.legend_below(ax)
    return [plots.save(fig, plot_dir / "ladder.png")]


def _spread(center: float, n: int) -> list[float]:
    return [center + (k - (n - 1) / 2) * 0.05 for k in range(n)]


def _not_reached_at(results: dict[str, Any], variant: str) -> list[float | None]:
    """Per seed: the largest count / the episodes played where the target was not reached, else None."""
    target = results["budget"]["target"]
    out = []
    for r in sorted((r for r in results["runs"] if r["variant"] == variant), key=lambda r: r["seed"]):
        if variant.startswith("bc-"):
            out.append(None if first_crossing(bc_points(r), "demos", "success_rate", target) else r["demos"])
        else:
            out.append(None if first_crossing(r["curve"], "episodes", "success_rate", target) else r["episodes"])
    return out


# ----------------------------------------------------------------------------------------------------- report
def ladder_table(results: dict[str, Any]) -> str:
    summary, target = results["summary"], results["budget"]["target"]
    lines = [f"| level | BC: demonstrations to {target:.0%} | paper (IL) | PPO: training episodes to {target:.0%} | "
             "paper (RL) | BC success at its largest count | PPO final success |", "|---|---|---|---|---|---|---|"]
    for level in results["budget"]["levels"]:
        name, paper = short(level), PAPER_99[level]
        cells = []
        for quantity, variant in ((DEMOS, f"bc-{name}"), (EPISODES, f"ppo-{name}")):
            row = find(summary, quantity, variant)
            cells.append(_reached_cell(row, _not_reached_at(results, variant)) if row else "not run")
        bc_final = find(summary, f"{METRIC} at the largest count tried", f"bc-{name}")
        ppo_final = find(summary, f"final {METRIC}", f"ppo-{name}")
        lines.append(f"| {name} | {cells[0]} | {paper['il'][0]:,}-{paper['il'][1]:,} | {cells[1]} | "
                     f"{paper['rl'][0]:,}-{paper['rl'][1]:,} | {_cell(bc_final)} | {_cell(ppo_final)} |")
    return "\n".join(lines)


def _cell(row: dict[str, Any] | None) -> str:
    return format_cell(row) if row else "not run"


def _reached_cell(row: dict[str, Any], not_reached: list[float | None]) -> str:
    """Per seed: the count where the target held, or "> n" (not reached: at least n)."""
    seeds = [f"{v:,.0f}" if v is not None else (f"> {bound:,.0f}" if bound is not None else "-")
             for v, bound in zip(row["values"], not_reached)]
    head = f"{row['fmt'].format(row['mean'])} mean of {row['n']}/{row['n_total']}" if row["n"] else "not reached"
    return f"{head}; seeds {' / '.join(seeds)}"


def takeaway(results: dict[str, Any]) -> str:
    summary, budget = results["summary"], results["budget"]
    target = budget["target"]
    parts = []
    for level in budget["levels"]:
        name = short(level)
        demos, episodes = find(summary, DEMOS, f"bc-{name}"), find(summary, EPISODES, f"ppo-{name}")
        said = []
        if demos:
            said.append(f"BC {value(demos)} demonstrations" if demos["n"] else
                        f"BC not within {max(budget['demo_grid']):,} demonstrations")
        if episodes:
            said.append(f"PPO {value(episodes)} episodes" if episodes["n"] else "PPO not within its budget")
        if said:
            parts.append(f"{name}: {join(said)}")
    if not parts:
        return "No run finished."
    return (f"To reach {target:.0%} success and keep it at the next read, " + "; ".join(parts) + " (means over the "
            "seeds that reached it; the paper's intervals and every seed are in the table).")


def limits(results: dict[str, Any]) -> list[str]:
    summary, budget = results["summary"], results["budget"]
    out = []
    for change in not_improved(summary):
        v = change["variant"]
        out.append(learning_sentence(v, find(summary, f"untrained (step 0) {METRIC}", v),
                                     find(summary, f"final {METRIC}", v), change))
    smallest = min(budget["demo_grid"])
    for level in budget["levels"]:
        row = find(summary, DEMOS, f"bc-{short(level)}")
        if row and any(v == smallest for v in row["values"]):
            out.append(f"{short(level)}: BC held the target from the smallest count tried ({smallest:,}): there its "
                       "demonstrations to the target are an upper bound.")
        for variant, what in ((f"bc-{short(level)}", "demonstrations"), (f"ppo-{short(level)}", "episodes")):
            missing = [b for b in _not_reached_at(results, variant) if b is not None]
            if missing:
                out.append(f"{short(level)}: {len(missing)} seed(s) of {variant.split('-')[0].upper()} did not reach "
                           f"the target within the budget ({', '.join(f'{b:,.0f}' for b in missing)} {what}): "
                           "only a lower bound.")
    return out


def report(results: dict[str, Any], plot_paths: list[str]) -> str:
    budget, summary, settings = results["budget"], results["summary"], results["settings"]
    full = results["full_budget"]
    e = settings["encoder"]
    rl = "; ".join(f"{short(level)} {steps:,} steps, evaluated every {every:,}"
                   for level, (steps, every) in settings["rl_budget"].items())
    sides = sorted(set(budget.get("paradigms", ["bc", "ppo"])))  # results from before the option: both sides
    alone = f"only the {sides[0].upper()} side ran (--budget.paradigms); " if len(sides) == 1 else ""
    note = budget_note(
        results,
        f"{alone}levels {', '.join(short(level) for level in budget['levels'])}; behaviour cloning on "
        f"{' / '.join(f'{n:,}' for n in budget['demo_grid'])} bot demonstrations (each seed its own collection), "
        f"{budget['bc_epochs']:g} passes but at least {budget['bc_steps']:,} steps of batch 256, stopping at the "
        f"first count where the target held at the next one; PPO at most {rl}, {budget['eval_episodes']} fresh "
        f"episodes per evaluation (other episodes at every evaluation), stopping once the target held at two "
        f"evaluations; every final success (BC at each count, PPO at its end) on {budget['final_episodes']:,} fresh "
        f"episodes; actions sampled; seeds {', '.join(map(str, results['seeds']))}.",
        f"Quick mode shows the protocol on the easiest level; `--full` climbs {', '.join(short(x) for x in full['levels'])}"
        f" with up to {max(full['demo_grid']):,} demonstrations and millions of PPO steps per seed.")
    return "\n".join([
        "## The BabyAI ladder: labels vs rewards, level by level",
        "",
        "**Takeaway.** " + takeaway(results),
        "",
        f"Both paradigms use one fusion encoder (d{e['d_model']}, {e['num_heads']} head, {e['num_layers']} layer, the "
        "view as 9 patch tokens of a 3x3 conv stem, the 4 previous actions as one token): behaviour cloning reads its "
        "summary token with a linear head, PPO its summary token and patches with the agents' MLP heads. The counts "
        "are this small encoder's, not the levels': BC copies the bot only as well as the encoder can, PPO learns a "
        "policy of its own (BENCHMARKS.md, the ladder, measures a larger BC model on GoToLocal).",
        "",
        note,
        "",
        "### The ladder",
        ladder_table(results),
        "",
        "Published numbers are the BabyAI paper's (its own model, a GRU + FiLM agent, and its own search and "
        "evaluation): they set the scale, a like-for-like comparison would need its protocol.",
        "",
        "### Every quantity, per level",
        *[line for level in budget["levels"] if rows_of(summary, short(level)) for line in (
            f"**{short(level)}**", "",
            markdown_table(rows_of(summary, short(level)), labels={f"bc-{short(level)}": "behaviour cloning",
                                                                  f"ppo-{short(level)}": "PPO"}), "")],
        *closing_lines(plot_paths, limits(results)),
    ])


def tensorboard_layout(results: dict[str, Any]) -> dict[str, Any]:
    from lab import tags

    return {f"{results['experiment']}: the BabyAI ladder": [
        ("success rate on fresh episodes (PPO: x = environment steps; BC: one point per demonstration count)",
         [f"^{tags.SUCCESS_RATE}$"]),
    ]}
