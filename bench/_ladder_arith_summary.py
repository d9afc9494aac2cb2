"""The summary of bench/ladder_arith.py: tables, paired tests, PNGs and summary.json from its run folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from _arith_levels import LEVELS, accuracy, cell, mcnemar, paired, plot_levels, records
from strop.evaluation.report import _plt
from strop.training.grpo import load_metrics

ARMS = ("ladder", "roots")
LABELS = {"base": "before", "ladder": "after LADDER (3 seeds)", "roots": "after plain RL on the roots (3 seeds)"}
COLUMNS = LEVELS + ["d3", "all"]


def summarise(out: Path, seeds: list[int], walls: dict[str, float], *, machine: str) -> dict[str, Any]:
    s: dict[str, Any] = {"machine": machine, "seeds": seeds, "walls_s": walls, "accuracy": {}, "paired": {}, "training": {}}
    names = ["base"] + [f"{arm}-s{k}" for arm in ARMS for k in seeds]
    plot_acc: dict[str, dict] = {}
    for decode in ("sample", "greedy"):
        recs = {n: records(out / f"eval-{n}-{decode}") for n in names if (out / f"eval-{n}-{decode}" / "records.jsonl").is_file()}
        groups = {"base": ["base"], **{arm: [n for n in recs if n.startswith(arm + "-")] for arm in ARMS}}
        print(f"\n{decode}: accuracy on held-out problems (95% Wilson interval; arms pool their seeds)")
        print(f"{'model':<10}" + "".join(f"{c:>18}" for c in COLUMNS))
        s["accuracy"][decode] = {}
        for label, members in [(n, [n]) for n in recs] + [(arm, groups[arm]) for arm in ARMS]:
            if not members or not all(m in recs for m in members):
                continue
            row = {c: accuracy([recs[m] for m in members], c) for c in COLUMNS}
            s["accuracy"][decode][label] = row
            print(f"{label:<10}" + "".join(f"{cell(row[c]):>18}" for c in COLUMNS))
        plot_acc[decode] = {g: s["accuracy"][decode][g] for g in ("base", *ARMS) if g in s["accuracy"][decode]}
        # Paired: each seed's LADDER model against the same seed's plain model, and each against the base; then summed over seeds.
        print(f"\n{decode}: paired attempts, only A right / only B right, exact McNemar p (summed over seeds)")
        tests: dict[str, Any] = {}
        for a, b in (("ladder", "roots"), ("ladder", "base"), ("roots", "base")):
            for c in ("d3o1", "d3o2", "d3", "all"):
                per_seed = []
                for k in seeds:
                    ra, rb = recs.get(f"{a}-s{k}"), recs.get("base" if b == "base" else f"{b}-s{k}")
                    if ra is not None and rb is not None:
                        per_seed.append(paired(ra, rb, c))
                if not per_seed:
                    continue
                tot = mcnemar(sum(x for x, _ in per_seed), sum(y for _, y in per_seed))
                tests[f"{a} vs {b} {c}"] = {**tot, "per_seed": per_seed}
                print(f"  {a:>6} vs {b:<6} {c:<5} {tot['only_a']:4d} / {tot['only_b']:<4d} p = {tot['p']:.4f}   per seed {per_seed}")
        s["paired"][decode] = tests
    plot_levels(plot_acc, LABELS, out / "accuracy_per_level.png")
    s["training"] = training_summary(out, seeds)
    s["ttrl"] = ttrl_summary(out)
    (out / "summary.json").write_text(json.dumps(s, indent=1))
    print(f"\nwrote {out / 'summary.json'}, {out / 'accuracy_per_level.png'}, {out / 'zero_variance.png'}, {out / 'ttrl.png'}")
    return s


def training_summary(out: Path, seeds: list[int]) -> dict[str, Any]:
    """Per arm and seed: reward and zero-variance fraction per step, the arm (depth) of each step, seconds per step."""
    runs: dict[str, Any] = {}
    for arm in ARMS:
        for k in seeds:
            folder = out / f"train-{arm}-s{k}"
            if not (folder / "metrics.jsonl").is_file():
                continue
            metrics, curriculum = load_metrics(folder)
            depth = [max(r["counts"], key=r["counts"].get) if r.get("counts") else None for r in curriculum]
            runs[f"{arm}-s{k}"] = {
                "reward": [m["reward"] for m in metrics], "zero_std": [m["frac_reward_zero_std"] for m in metrics],
                "correct": [m.get("rewards/correct/mean") for m in metrics], "arm": depth[: len(metrics)],
                "s_per_step": float(np.median([m["wall_per_step_s"] for m in metrics if "wall_per_step_s" in m] or [np.nan]))}
    print("\ntraining: fraction of zero-variance groups and mean reward per step (mean over seeds)")
    for arm in ARMS:
        rs = [v for k, v in runs.items() if k.startswith(arm + "-")]
        if not rs:
            continue
        n = min(len(r["zero_std"]) for r in rs)
        z = np.mean([r["zero_std"][:n] for r in rs], axis=0)
        rw = np.mean([r["reward"][:n] for r in rs], axis=0)
        print(f"  {arm:<7} zero-std {' '.join(f'{x:.2f}' for x in z)}   (all steps {z.mean():.2f})")
        print(f"  {'':<7} reward   {' '.join(f'{x:.2f}' for x in rw)}   ({np.median([r['s_per_step'] for r in rs]):.0f} s/step)")
        if arm == "ladder":
            by_depth: dict[str, list[tuple[float, float]]] = {}
            for r in rs:
                for d, zz, rr in zip(r["arm"], r["zero_std"], r["reward"]):
                    by_depth.setdefault(str(d), []).append((zz, rr))
            for d, v in by_depth.items():
                print(f"  {'':<7} {d}: zero-std {np.mean([a for a, _ in v]):.2f}, reward {np.mean([b for _, b in v]):.3f} ({len(v)} steps)")
    _plot_zero_std(runs, out / "zero_variance.png")
    return runs


def _plot_zero_std(runs: dict[str, Any], path: Path) -> None:
    if not runs:
        return
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    colors = {"ladder": "tab:blue", "roots": "tab:orange"}
    for name, r in runs.items():
        arm = name.split("-")[0]
        steps = range(1, len(r["zero_std"]) + 1)
        kw = {"color": colors[arm], "alpha": 0.7, "label": name}
        axes[0].plot(steps, r["zero_std"], marker=".", **kw)
        axes[1].plot(steps, r["reward"], marker=".", **kw)
    axes[0].set_ylabel("zero-variance groups (fraction)")
    axes[1].set_ylabel("mean reward")
    for ax in axes:
        ax.set_xlabel("GRPO step")
        ax.legend(fontsize=7, ncol=2)
    axes[0].set_title("groups with no signal: LADDER (tree depths easiest first, 3 steps each) vs plain RL on the roots", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ttrl_summary(out: Path) -> dict[str, Any]:
    """Test-time variant RL: per problem before/after, totals."""
    path = out / "ttrl" / "records.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    table = []
    print("\ntest-time variant RL, per problem: variants, greedy before -> after, samples correct before -> after, "
          "variant rollouts correct per step")
    for r in rows:
        st = r["stats"]
        table.append({"id": r["id"], "question": r.get("question"), "category": r["category"], "gold": r.get("gold"),
                      "variants": st["variants"], "greedy_before": st["correct_before"], "greedy_after": st["correct_after"],
                      "samples_before": st.get("sample_correct_before"), "samples_after": st.get("sample_correct_after"),
                      "n": st.get("pass_samples"), "train_correct": st.get("train_correct"),
                      "variant_solved": st.get("variant_solved"), "solved_during": st["solved_during"], "wall_s": st["wall_s"]})
        t = table[-1]
        print(f"  {t['id']:<22} {t['variants']:>3} {int(t['greedy_before'])} -> {int(t['greedy_after'])}   "
              f"{t['samples_before']}/{t['n']} -> {t['samples_after']}/{t['n']}   "
              f"{' '.join(f'{c:.2f}' for c in t['train_correct'] or [])}   {t['wall_s']:.0f} s")
    n = len(table)
    k = table[0]["n"] if table else 0
    tot = {"problems": n, "n": k,
           "greedy_before": sum(t["greedy_before"] for t in table), "greedy_after": sum(t["greedy_after"] for t in table),
           "pass1_before": float(np.mean([t["samples_before"] / k for t in table])) if n and k else None,
           "pass1_after": float(np.mean([t["samples_after"] / k for t in table])) if n and k else None,
           "passn_before": sum(t["samples_before"] > 0 for t in table) if k else None,
           "passn_after": sum(t["samples_after"] > 0 for t in table) if k else None,
           "variant_solved": sum(bool(t["variant_solved"]) for t in table), "solved_during": sum(t["solved_during"] for t in table),
           "wall_s": sum(t["wall_s"] for t in table)}
    if n and k:
        up = sum(max(0, t["samples_after"] - t["samples_before"]) for t in table)
        down = sum(max(0, t["samples_before"] - t["samples_after"]) for t in table)
        tot["samples_net"] = {"problems_up": sum(t["samples_after"] > t["samples_before"] for t in table),
                              "problems_down": sum(t["samples_after"] < t["samples_before"] for t in table), "up": up, "down": down}
        print(f"  totals over {n} problems: greedy {tot['greedy_before']} -> {tot['greedy_after']}; pass@1 "
              f"{tot['pass1_before']:.3f} -> {tot['pass1_after']:.3f}; pass@{k} {tot['passn_before']} -> {tot['passn_after']}; "
              f"a variant solved in training {tot['variant_solved']}; any verified attempt correct {tot['solved_during']}; "
              f"{tot['wall_s']:.0f} s")
        _plot_ttrl(table, out / "ttrl.png")
    return {"per_problem": table, "totals": tot}


def _plot_ttrl(table: list[dict], path: Path) -> None:
    """Left: samples right before and after, per problem (markers, so zeros show). Right: variant rollouts correct per step."""
    plt = _plt()
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(14, 3.8), gridspec_kw={"width_ratios": [3, 2]})
    x = np.arange(len(table))
    k = table[0]["n"]
    names = ["-".join(t["id"].split("-")[-2:]) for t in table]
    ax.plot(x, [t["samples_before"] for t in table], "o", label="before (base)")
    ax.plot(x, [t["samples_after"] for t in table], "x", label="after test-time variant RL")
    ax.set_xticks(x, names, rotation=90, fontsize=7)
    ax.set_ylim(-0.3, k + 0.3)
    ax.set_ylabel(f"test samples right (of {k}, T=1)")
    ax.set_title("the test problem, before and after", fontsize=10)
    ax.legend(fontsize=8)
    steps = max(len(t["train_correct"] or []) for t in table)
    grid = np.array([(t["train_correct"] or []) + [np.nan] * (steps - len(t["train_correct"] or [])) for t in table])
    im = hm.imshow(grid.T, aspect="auto", cmap="viridis", vmin=0)
    hm.set_xticks(x, names, rotation=90, fontsize=7)
    hm.set_yticks(range(steps), [f"step {i + 1}" for i in range(steps)], fontsize=8)
    hm.set_title("its variants during training: fraction of rollouts correct", fontsize=10)
    fig.colorbar(im, ax=hm)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
