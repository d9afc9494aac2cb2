"""The seed methods on real benchmarks with a 1.5B instruct model: every arm is an ``strop eval`` run folder.

    MODEL=$(../shared/models/qwen2.5-coder-1.5b.sh)
    python bench/replication.py run --model "$MODEL"                       # every suite and arm, in order; resumable
    python bench/replication.py run --model "$MODEL" --suite gsm8k --arm power
    python bench/replication.py commands --model "$MODEL"                  # the strop eval command of every arm
    python bench/replication.py report --plot docs/replication_1.5b.png    # tables (markdown), paired tests, the PNG

Suites (problems fixed before any arm ran; settings chosen on development problems outside them, see DEV below):
- gsm8k: the first 200 GSM8K test problems; greedy, temperature 1, temperature 1/alpha, power sampling by MH
  (alpha 4) and by SMC (alpha 4, 4 particles: about MH's decoded tokens),
  each at most 512 tokens with the task's own prompt. The temperature-1 arm runs several samples per
  problem: its sample 0 is the temperature-1 arm, and its first k samples give majority@k (votes grouped by answer
  equivalence) and best-of-k (the highest mean log-likelihood, best-of-n's default score), with k read off where
  its decoded tokens reach the power arm's; "any of k right" is reported beside them as the oracle bound.
- humaneval: all 164 problems, the same four arms (pass@1, code run in strop's sandbox).
- rc: MATH500 levels 1-3, the first 100 in file order; RC with 4 turns against one long generation with the
  same total tokens and against greedy with one turn's budget. Per turn: accuracy, verdicts lost and gained, and
  how many summaries still hold the turn's answer; the last turn is paired with the first (the rise RC claims).

Each arm is one ``strop eval`` invocation (printed before it runs) writing its own folder under ``--out``:
killing the script loses at most the attempts in flight, and running it again resumes every folder where it
stopped. ``report`` reads only the folders, so it works on partial runs too (a table says how many problems
each arm has so far; paired tests use the problems both arms have).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from strop.evaluation.metrics import majority_correct_at_k, mcnemar_exact, wilson_interval
from strop.records import read_records
from strop.tasks.builtin import code_body
from strop.verifiers.voting import vote_relation

ROOT = Path(__file__).resolve().parent.parent
# Relative to the repository root, where the eval commands run: a run folder records its data path, and a clone
# elsewhere (with shared/ beside it) must still resume it.
DATA = "../shared/data"
OUT = "bench/replication"

ALPHA = 4.0
MAX_TOKENS = 512        # GSM8K and HumanEval, every arm
POWER_BLOCK = 128       # B: 4 blocks in 512 tokens (the paper: B = 192 in T = 3072, 16 blocks)
POWER_STEPS = 2         # N: MH steps per block (the paper: 10; its gains "mostly arrive by N = 2")
SMC_PARTICLES = 4       # SMC arm: 4 particles of at most 512 tokens, about the MH arm's decoded tokens per problem
SMC_BLOCK, SMC_RAMP = 64, 128  # the paper's block; its ramp (400 of 2048 tokens) scaled to a quarter of the cap
MAJ_SAMPLES = 4         # temperature-1 samples per GSM8K problem: maj@k for k <= 4 (power costs about 2 samples)
RC_TURNS, RC_HR, RC_HS = 4, 512, 128
# Development problems (settings and prompts were looked at on these, never on the evaluated ones): GSM8K test
# problems 1300-1318 (the evaluated ones are 0-199; no train split is on this machine) and MATH500 level 4-5.
DEV = {"gsm8k": "GSM8K test ids 1300-1318", "rc": "MATH500 levels 4-5"}


@dataclass(frozen=True)
class Arm:
    suite: str
    name: str
    label: str
    args: tuple[str, ...]
    samples: int = 1

    def folder(self, out: Path) -> Path:
        return out / f"{self.suite}-{self.name}"


@dataclass(frozen=True)
class Suite:
    name: str
    task: tuple[str, ...]  # --task and its data/limit/category options
    arms: tuple[Arm, ...] = field(default_factory=tuple)


def _power(suite: str) -> Arm:
    return Arm(suite, "power", f"power (MH, alpha {ALPHA:g}, B {POWER_BLOCK}, N {POWER_STEPS})",
               ("--method", "power", "--alpha", f"{ALPHA:g}", "--block-size", str(POWER_BLOCK), "--mcmc-steps", str(POWER_STEPS),
                "--cut", "uniform", "--max-tokens", str(MAX_TOKENS)))


def _smc(suite: str) -> Arm:
    return Arm(suite, "smc", f"power (SMC, alpha {ALPHA:g}, N {SMC_PARTICLES}, block {SMC_BLOCK}, ramp {SMC_RAMP})",
               ("--method", "power", "--sampler", "smc", "--alpha", f"{ALPHA:g}", "--particles", str(SMC_PARTICLES), "--smc-block",
                str(SMC_BLOCK), "--ramp", str(SMC_RAMP), "--max-tokens", str(MAX_TOKENS)))


def _plain(suite: str, maj: int = 1) -> tuple[Arm, ...]:
    tok = ("--max-tokens", str(MAX_TOKENS))
    return (Arm(suite, "greedy", "greedy", ("--method", "greedy", *tok)),
            _power(suite),
            _smc(suite),
            Arm(suite, "temp-low", f"temperature 1/alpha ({1 / ALPHA:g})", ("--method", "sample", "--temperature", f"{1 / ALPHA:g}", *tok)),
            Arm(suite, "temp1", "temperature 1", ("--method", "sample", "--temperature", "1", *tok), samples=maj))


def suites(data: Path) -> dict[str, Suite]:
    rc_budget = ("--turns", str(RC_TURNS), "--reasoning-tokens", str(RC_HR), "--summary-tokens", str(RC_HS), "--temperature", "1")
    return {
        "gsm8k": Suite("gsm8k", ("--task", "gsm8k", "--data", str(data / "gsm8k_test.jsonl"), "--limit", "200"), _plain("gsm8k", MAJ_SAMPLES)),
        "humaneval": Suite("humaneval", ("--task", "humaneval"), _plain("humaneval")),
        "rc": Suite("rc", ("--task", "math500", "--data", str(data / "math500.jsonl"), "--category", "level1", "--category", "level2",
                           "--category", "level3", "--limit", "100"), (
            Arm("rc", "greedy", f"greedy ({RC_HR} tokens)", ("--method", "greedy", "--max-tokens", str(RC_HR))),
            Arm("rc", "rc", f"RC (T {RC_TURNS}, H_R {RC_HR}, H_S {RC_HS})", ("--method", "rc", *rc_budget)),
            Arm("rc", "long", f"long ({RC_TURNS * (RC_HR + RC_HS)} tokens)", ("--method", "long", *rc_budget)),
        )),
    }


def _override(args: tuple[str, ...], option: str, value: int | None) -> tuple[str, ...]:
    """``args`` with ``option``'s value replaced (if it has one and ``value`` is set)."""
    if value is None or option not in args:
        return args
    i = args.index(option)
    return (*args[:i + 1], str(value), *args[i + 2:])


def command(suite: Suite, arm: Arm, model: str, out: Path, samples: int | None = None, limit: int | None = None,
            max_tokens: int | None = None) -> list[str]:
    """The ``strop eval`` command of one arm; ``limit``/``max_tokens`` shrink it for a smoke run (another folder!)."""
    task = _override(suite.task, "--limit", limit)
    if limit is not None and "--limit" not in task:
        task = (*task, "--limit", str(limit))
    arm_args = arm.args
    for opt in ("--max-tokens", "--reasoning-tokens", "--summary-tokens"):
        arm_args = _override(arm_args, opt, max_tokens)
    return [sys.executable, "-m", "strop", "eval", *task, *arm_args, "--samples", str(samples or arm.samples),
            "--model", model, "--seed", "0", "--out", str(arm.folder(out))]


def _selected(all_suites: dict[str, Suite], names: list[str] | None, arms: list[str] | None) -> Iterable[tuple[Suite, Arm]]:
    for s in (all_suites[n] for n in (names or list(all_suites))):
        for a in s.arms:
            if not arms or a.name in arms:
                yield s, a


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)  # relative paths are the repository root's
    for suite, arm in _selected(suites(Path(args.data)), args.suite, args.arm):
        cmd = command(suite, arm, args.model, out, args.samples if arm.samples > 1 else None, args.limit, args.max_tokens)
        print("+ " + " ".join(cmd[2:]), flush=True)
        if not args.dry_run:
            subprocess.run(cmd, check=True, cwd=ROOT)


# ---------------------------------------------------------------- report

def _records(folder: Path) -> list[dict]:
    return read_records(folder / "records.jsonl")


def _by_id(recs: list[dict], sample: int = 0) -> dict[str, dict]:
    return {r["id"]: r for r in recs if r["sample"] == sample}


def _answered(suite: str, r: dict) -> bool:
    # A code answer is the program that ran; records written before strop kept it there hold a number or None
    # in "answer", so for code the output is read again.
    return bool(code_body(r["output"]).strip()) if suite == "humaneval" else r["answer"] is not None


def _row(label: str, rs: list[dict], suite: str) -> dict:
    n, c = len(rs), sum(r["correct"] for r in rs)
    lo, hi = wilson_interval(c, n)
    cap = sum(r.get("finish_reason") == "length" for r in rs)
    return {"arm": label, "n": n, "correct": c, "accuracy": c / n if n else None, "ci95": [lo, hi],
            "tokens": sum(r["tokens"] for r in rs) / n if n else None, "seconds": sum(r["seconds"] for r in rs) / n if n else None,
            "no_answer": sum(not _answered(suite, r) for r in rs), "at_cap": cap}


def _paired(a: dict[str, dict], b: dict[str, dict]) -> tuple[int, int, int, float]:
    ids = set(a) & set(b)
    only_a = sum(a[i]["correct"] and not b[i]["correct"] for i in ids)
    only_b = sum(b[i]["correct"] and not a[i]["correct"] for i in ids)
    return len(ids), only_a, only_b, mcnemar_exact(only_a, only_b)


def _majority(recs: list[dict], k_max: int) -> list[dict]:
    """maj@k over problems with at least k samples: accuracy, interval, decoded tokens per problem (the first k samples')."""
    same = vote_relation("equivalence")
    per: dict[str, list[dict]] = {}
    for r in recs:
        per.setdefault(r["id"], []).append(r)
    rows = []
    for rs in per.values():
        rs.sort(key=lambda r: r["sample"])
    votes = {i: majority_correct_at_k([r["answer"] for r in rs], [r["correct"] for r in rs], same) for i, rs in per.items()}
    for k in range(1, k_max + 1):
        full = [i for i, rs in per.items() if {r["sample"] for r in rs} >= set(range(k))]
        if not full:
            break
        c = sum(votes[i][k - 1] for i in full)
        tok = sum(sum(r["tokens"] for r in per[i] if r["sample"] < k) for i in full) / len(full)
        rows.append({"k": k, "n": len(full), "correct": c, "accuracy": c / len(full), "ci95": list(wilson_interval(c, len(full))),
                     "tokens": tok, "by_id": {i: votes[i][k - 1] for i in full}})
        # best-of-k by mean log-likelihood (the method best-of-n's default score), from the same samples; and whether
        # any of the k is right (the oracle pick: an upper bound on any selection, not a method).
        firsts = {i: [r for r in per[i] if r["sample"] < k] for i in full}
        if all("mean_logprob" in r for rs in firsts.values() for r in rs):  # records written before it was kept have none
            best = {i: max(rs, key=lambda r: -math.inf if r["mean_logprob"] is None else r["mean_logprob"])["correct"]
                    for i, rs in firsts.items()}
            rows[-1]["best_of"] = sum(best.values())
            rows[-1]["best_of_by_id"] = best
        rows[-1]["any_right"] = sum(any(r["correct"] for r in rs) for rs in firsts.values())
    return rows


def _turn_dynamics(recs: list[dict], hr: int = RC_HR, hs: int = RC_HS) -> list[dict]:
    """Per RC turn: verdicts lost and gained against the previous turn, turns with no answer, how many of the
    turn's answers its summary (what the next turn sees) still holds: whether the partial result is carried, and
    how many reasonings and summaries were cut by their caps (``hr``, ``hs``; counted where the record has them)."""
    def squash(x: object) -> str:  # "1, 2" in a summary holds "1,2": spacing is not content
        return "".join(str(x).split())

    out = []
    for t in range(max(len(r["turns"]) for r in recs)):
        here = [r["turns"] for r in recs if len(r["turns"]) > t]
        answered = [ts[t] for ts in here if ts[t]["answer"]]
        out.append({"turn": t + 1, "n": len(here),
                    "lost": sum(t > 0 and ts[t - 1]["correct"] and not ts[t]["correct"] for ts in here),
                    "gained": sum(t > 0 and not ts[t - 1]["correct"] and ts[t]["correct"] for ts in here),
                    "no_answer": len(here) - len(answered), "answered": len(answered),
                    "summary_has_answer": sum(squash(x["answer"]) in squash(x.get("summary", "")) for x in answered),
                    "counted": sum("summary_tokens" in ts[t] for ts in here),
                    "reasoning_cut": sum(ts[t].get("reasoning_tokens", 0) >= hr for ts in here),
                    "summary_cut": sum(ts[t].get("summary_tokens", 0) >= hs for ts in here)})
    return out


def _fmt_ci(ci: list[float]) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def report(args: argparse.Namespace) -> None:
    out = ROOT / args.out
    lines: list[str] = []
    summary: dict = {"machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}", "suites": {}}
    plot_data: dict[str, list[tuple[str, float, float, list[float], int]]] = {}  # label, tokens, accuracy, CI, problems
    for suite in suites(Path(args.data)).values():
        present = [(a, recs) for a in suite.arms if (recs := _records(a.folder(out)))]
        if not present:
            continue
        lines += [f"### {suite.name}", "", "| arm | n | correct | accuracy | 95% CI | decoded tokens / problem | s / problem | no answer | at token cap |",
                  "|---|---|---|---|---|---|---|---|---|"]
        rows, first, turns = [], {}, {}
        for arm, recs in present:
            first[arm.name] = _by_id(recs)
            row = _row(arm.label, list(first[arm.name].values()), suite.name)
            rows.append(row)
            lines.append(f"| {row['arm']} | {row['n']} | {row['correct']} | {row['accuracy']:.3f} | {_fmt_ci(row['ci95'])} | {row['tokens']:.0f} | "
                         f"{row['seconds']:.1f} | {row['no_answer']} | {row['at_cap']} |")
            plot_data.setdefault(suite.name, []).append((arm.label, row["tokens"], row["accuracy"], row["ci95"], row["n"]))
            per_turn = [r for r in first[arm.name].values() if r.get("turns")]
            if per_turn:
                for t in range(max(len(r["turns"]) for r in per_turn)):
                    ts = [r["turns"][t] for r in per_turn if len(r["turns"]) > t]
                    c = sum(x["correct"] for x in ts)
                    ci = list(wilson_interval(c, len(ts)))
                    tok = sum(x["cumulative_tokens"] for x in ts) / len(ts)
                    lines.append(f"| {arm.label}, after turn {t + 1} | {len(ts)} | {c} | {c / len(ts):.3f} | {_fmt_ci(ci)} | {tok:.0f} | | | |")
                    plot_data[suite.name].append((f"RC turn {t + 1}", tok, c / len(ts), ci, len(ts)))
                    row.setdefault("per_turn", []).append({"turn": t + 1, "n": len(ts), "correct": c, "ci95": ci, "tokens": tok})
                row["turn_dynamics"] = _turn_dynamics(per_turn)
                # RC's claim is a rise over turns: its last turn against its first on the same problems.
                turns[arm.name] = tuple({r["id"]: {"correct": r["turns"][t]["correct"]} for r in per_turn} for t in (0, -1))
        maj = []
        for arm, recs in present:
            if arm.samples > 1 and any(r["sample"] > 0 for r in recs):
                maj = _majority(recs, max(r["sample"] for r in recs) + 1)
                for m in maj:
                    lines.append(f"| maj@{m['k']} (temperature 1, equivalence) | {m['n']} | {m['correct']} | {m['accuracy']:.3f} | "
                                 f"{_fmt_ci(m['ci95'])} | {m['tokens']:.0f} | | | |")
                for m in maj:
                    if "best_of" in m:
                        ci = list(wilson_interval(m["best_of"], m["n"]))
                        lines.append(f"| best-of-{m['k']} (temperature 1, mean log-likelihood) | {m['n']} | {m['best_of']} | "
                                     f"{m['best_of'] / m['n']:.3f} | {_fmt_ci(ci)} | {m['tokens']:.0f} | | | |")
                for m in maj:
                    ci = list(wilson_interval(m["any_right"], m["n"]))
                    lines.append(f"| any of {m['k']} right (temperature 1; oracle, not a method) | {m['n']} | {m['any_right']} | "
                                 f"{m['any_right'] / m['n']:.3f} | {_fmt_ci(ci)} | {m['tokens']:.0f} | | | |")
                plot_data[suite.name].append(("maj@k", [m["tokens"] for m in maj], [m["accuracy"] for m in maj],
                                              [m["ci95"] for m in maj], min(m["n"] for m in maj)))
        names = [a.name for a, _ in present]
        labels = {a.name: a.label for a, _ in present}
        pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]]
        if pairs or turns or (maj and "power" in first):  # a table of paired tests only when something is paired
            lines += ["", "| A | B | paired problems | only A right | only B right | exact McNemar p |", "|---|---|---|---|---|---|"]
        tests = []
        for x, y in pairs:
            n, oa, ob, p = _paired(first[x], first[y])
            tests.append({"a": x, "b": y, "n": n, "only_a": oa, "only_b": ob, "p": p})
            lines.append(f"| {labels[x]} | {labels[y]} | {n} | {oa} | {ob} | {p:.3g} |")
        for name, (turn1, last) in turns.items():
            n, oa, ob, p = _paired(last, turn1)
            tests.append({"a": f"{name} last turn", "b": f"{name} turn 1", "n": n, "only_a": oa, "only_b": ob, "p": p})
            lines.append(f"| {labels[name]}, last turn | {labels[name]}, after turn 1 | {n} | {oa} | {ob} | {p:.3g} |")
        if maj and "power" in first:
            power_tok = next(r["tokens"] for r in rows if r["arm"] == labels["power"])
            match = min(maj, key=lambda m: abs(m["tokens"] - power_tok))
            votes = {i: {"correct": v} for i, v in match["by_id"].items()}
            n, oa, ob, p = _paired(first["power"], votes)
            tests.append({"a": "power", "b": f"maj@{match['k']}", "n": n, "only_a": oa, "only_b": ob, "p": p, "token_matched": True})
            lines.append(f"| {labels['power']} | maj@{match['k']} (tokens matched: {match['tokens']:.0f} vs {power_tok:.0f}) | {n} | {oa} | {ob} | {p:.3g} |")
            if "best_of_by_id" in match:
                n, oa, ob, p = _paired(first["power"], {i: {"correct": v} for i, v in match["best_of_by_id"].items()})
                tests.append({"a": "power", "b": f"best-of-{match['k']}", "n": n, "only_a": oa, "only_b": ob, "p": p, "token_matched": True})
                lines.append(f"| {labels['power']} | best-of-{match['k']} (tokens matched) | {n} | {oa} | {ob} | {p:.3g} |")
        order = {r["arm"]: r["accuracy"] for r in rows}
        if all(a in first for a in ("temp1", "temp-low", "power")):
            t1, tl, pw = (order[labels[a]] for a in ("temp1", "temp-low", "power"))
            lines += ["", f"Paper's ordering base < low temperature < power: temperature 1 {t1:.3f}, 1/alpha {tl:.3f}, power {pw:.3f}: "
                          f"{'holds' if t1 < tl < pw else 'does not hold'} in the point estimates (the paired tests above say which steps are significant)."]
        lines.append("")
        summary["suites"][suite.name] = {"rows": rows, "paired": tests,
                                         "majority": [{k: v for k, v in m.items() if not k.endswith("by_id")} for m in maj]}
        for row in rows:
            if row.get("turn_dynamics"):
                lines += ["", f"Turn to turn, {row['arm']}:", "",
                          "| turn | problems | right -> wrong | wrong -> right | no answer | summary holds the turn's answer "
                          f"| reasoning cut at {RC_HR} | summary cut at {RC_HS} |",
                          "|---|---|---|---|---|---|---|---|"]
                lines += [f"| {d['turn']} | {d['n']} | {d['lost']} | {d['gained']} | {d['no_answer']} | {d['summary_has_answer']} of {d['answered']} "
                          f"| {d['reasoning_cut']} of {d['counted']} | {d['summary_cut']} of {d['counted']} |" for d in row["turn_dynamics"]]
    text = "\n".join(lines)
    print(text)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    if args.md:
        Path(args.md).write_text(text + "\n")
    if args.plot and plot_data:
        _plot(plot_data, Path(args.plot))
        print(f"wrote {args.plot}")


def _plot(data: dict[str, list], path: Path) -> None:
    from strop.evaluation.report import _plt, _yerr

    plt = _plt()
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    fig, axes = plt.subplots(1, len(data), figsize=(5.2 * len(data), 4.4), squeeze=False)
    for ax, (suite, points) in zip(axes[0], data.items()):
        full = max(n for *_, n in points)
        for label, x, y, ci, n in points:
            label = label if n == full else f"{label}, {n} of {full} so far"  # a partial arm says so
            xs, ys, cis = (x, y, ci) if isinstance(x, list) else ([x], [y], [ci])
            ax.errorbar(xs, ys, yerr=_yerr(ys, cis), marker="o", capsize=3, label=label, linestyle="-" if len(xs) > 1 else "none")
        ax.set(xscale="log", xlabel="decoded tokens per problem (rejected proposals included)", ylabel="accuracy (95% CI)",
               title=suite, ylim=(-0.02, 1.02))
        # Arms within one decade of tokens: round-number ticks, not matplotlib's labelled minor ticks.
        xs_all = [v for _, x, *_ in points for v in (x if isinstance(x, list) else [x])]
        lo, hi = min(xs_all) / 1.6, max(xs_all) * 1.6
        ax.set_xlim(lo, hi)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([t for t in (50, 100, 200, 300, 500, 1000, 2000, 3000, 5000, 10000) if lo <= t <= hi])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("run", "commands", "report"):
        p = sub.add_parser(name)
        p.add_argument("--out", default=OUT, help="folder of the run folders (relative: to the repository root)")
        p.add_argument("--data", default=DATA, help="shared/data, GSM8K and MATH500 files (relative: to the repository root)")
        if name in ("run", "commands"):
            p.add_argument("--model", required=True, help="the GGUF (../shared/models/qwen2.5-coder-1.5b.sh prints its path)")
            p.add_argument("--suite", action="append", choices=["gsm8k", "humaneval", "rc"], help="only this suite (repeatable)")
            p.add_argument("--arm", action="append", help="only this arm (repeatable): greedy, power, smc, temp-low, temp1, rc, long")
            p.add_argument("--samples", type=int, default=None,
                           help=f"temperature-1 arm of gsm8k: samples per problem (default {MAJ_SAMPLES}; a run can grow)")
            p.add_argument("--limit", type=int, help="smoke runs only: fewer problems (use another --out)")
            p.add_argument("--max-tokens", type=int, help="smoke runs only: every token budget set to this (use another --out)")
        else:
            p.add_argument("--md", help="also write the tables to this markdown file")
            p.add_argument("--plot", help="also draw accuracy vs decoded tokens per problem for every arm (PNG)")
    args = ap.parse_args()
    if args.cmd == "commands":
        args.dry_run = True
        run(args)
    elif args.cmd == "run":
        args.dry_run = False
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
