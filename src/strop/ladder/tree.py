"""Variant trees: build them breadth-first, save them as JSON lines, resume after a kill.

``TREE.jsonl`` holds one node per line: the task's own fields (so the file is
a dataset ``strop eval --data`` and ``strop train`` read directly), plus
``parent``, ``root``, ``depth``, ``source`` (root | symbolic | model),
``transform`` and generation metadata. ``category`` is ``depth{d}``: the
curriculum's arms, deepest (easiest) first. ``TREE.jsonl.expanded`` logs each
finished expansion with how many candidates were rejected and why; a node
without that line is expanded again on resume. Expansion randomness comes
from (seed, node id), so a resumed build proposes what the killed one would
have, and the de-duplication drops what was already written.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from strop.backends.base import Backend, SamplingParams
from strop.backends.chat import user_turn
from strop.errors import ConfigError, StropError
from strop.ladder.variants import Candidate, VariantKind, request_plan
from strop.records import read_records
from strop.tasks import Problem


@dataclass(frozen=True)
class TreeSpec:
    """How a tree grows. ``model_requests`` > 0 needs a backend (the model writes variants).

    ``validity``: which variants are kept, "sympy" (SymPy finds an antiderivative the verifier
    confirms) or "numeric" (the integral evaluates numerically, as the TTRL reference code
    checks; such variants have no answer); integrals only.
    """

    depth: int = 2
    symbolic_per_node: int = 4
    model_requests: int = 0
    variants_per_request: int = 10
    max_new_tokens: int = 256
    seed: int = 0
    validity: str = "sympy"

    def __post_init__(self) -> None:
        if not 1 <= self.depth <= 5:
            raise ConfigError(f"tree depth must be 1-5 (the paper uses 2-3), got {self.depth}")
        if self.symbolic_per_node < 0 or self.model_requests < 0 or self.variants_per_request < 1 or self.max_new_tokens < 1:
            raise ConfigError(f"symbolic_per_node and model_requests must be >= 0, variants_per_request and max_new_tokens >= 1; got {self}")
        if self.symbolic_per_node == 0 and self.model_requests == 0:
            raise ConfigError("nothing would generate variants: set symbolic_per_node or model_requests above 0")
        if self.validity not in ("sympy", "numeric"):
            raise ConfigError(f"validity must be sympy or numeric, got {self.validity!r}")


def _reason(why: str) -> str:
    """Group rejection reasons for the log (the detail varies per candidate)."""
    return why.split(":")[0].split("(")[0].strip()[:60]


def _node_rng(seed: int, node_id: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(node_id.encode())])


class TreeBuilder:
    """Grows one tree file (or an in-memory tree when ``path`` is None)."""

    def __init__(self, kind: VariantKind, spec: TreeSpec, path: Path | None = None, *, backend: Backend | None = None,
                 exclude_keys: set[str] | None = None, progress: Callable[[str], None] | None = None) -> None:
        if spec.model_requests and backend is None:
            raise ConfigError("model-written variants (model_requests > 0) need a backend")
        self.kind, self.spec, self.path, self.backend = kind.with_validity(spec.validity), spec, path, backend
        self.exclude = set(exclude_keys or ())
        self.progress = progress or (lambda msg: None)
        self.nodes: list[dict[str, Any]] = []
        self.expanded: set[str] = set()
        self.rejected: Counter[str] = Counter()
        if path is not None:
            self._open(path)
        self.keys = {n["key"] for n in self.nodes}

    # ------------------------------------------------------------ files
    @property
    def log_path(self) -> Path | None:
        return None if self.path is None else Path(str(self.path) + ".expanded")

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = {"spec": asdict(self.spec), "kind": self.kind.name}
        log = self.log_path
        assert log is not None
        entries = read_records(log, repair=True)  # the build appends to both files
        if entries and entries[0].get("spec") is not None:
            # A spec key added later (validity) is absent from older logs: those trees were built with its default.
            old = {"spec": {**asdict(TreeSpec()), **entries[0]["spec"]}, "kind": entries[0].get("kind")}
            if old != header:
                raise ConfigError(f"{path} was built with other settings ({old}); use another file or delete it and {log.name}")
        elif path.exists() and path.stat().st_size:
            raise ConfigError(f"{path} exists but has no build log {log.name}: not a tree strop can resume; use another file")
        else:
            log.write_text(json.dumps(header) + "\n")
        self.nodes = read_records(path, repair=True)
        self.expanded = {e["expanded"] for e in entries if "expanded" in e}
        for e in entries:
            self.rejected.update(e.get("rejected", {}))

    def _append(self, path: Path | None, record: dict[str, Any]) -> None:
        if path is not None:
            with path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(record, default=str) + "\n")

    def _add(self, node: dict[str, Any]) -> None:
        self._append(self.path, node)
        self.nodes.append(node)
        self.keys.add(node["key"])

    # ------------------------------------------------------------- build
    def add_roots(self, problems: Sequence[Problem]) -> int:
        """Write the roots not yet in the tree; returns how many were left out as test-set duplicates."""
        have = {n["id"] for n in self.nodes}
        payloads = [self.kind.payload(p) for p in problems]
        skipped = 0
        for p, payload in zip(problems, payloads):
            if p.id in have:
                continue
            v = self.kind.validate(payload)
            key = v["key"] if v.get("ok") else next(iter(self.kind.keys([payload])), f"root:{p.id}")
            if key in self.exclude:
                skipped += 1
                continue
            # A root stays even if SymPy cannot integrate it: it is a real problem, only without a known answer.
            row = v["row"] if v.get("ok") else self._plain_row(p, payload)
            self._add({"id": p.id, **row, "category": "depth0", "parent": None, "root": p.id, "depth": 0,
                       "source": "root", "transform": None, "key": key, "meta": {"category": p.category}})
        return skipped

    def _plain_row(self, problem: Problem, payload: str) -> dict[str, Any]:
        field = "integrand" if self.kind.name == "integral" else "question"
        return {field: payload, "answer": problem.gold if isinstance(problem.gold, (int, float, str)) else str(problem.gold)}

    def _candidates(self, node: dict[str, Any], rng: np.random.Generator) -> list[Candidate]:
        payload = node.get("integrand", node.get("question"))
        out = self.kind.symbolic(payload, self.spec.symbolic_per_node, int(rng.integers(2**31))) if self.spec.symbolic_per_node else []
        for r in range(self.spec.model_requests):
            assert self.backend is not None
            plan = request_plan(r, rng, self.kind)
            text = self.kind.request(payload, plan["transforms"], self.spec.variants_per_request)
            prompt = self.backend.chat_prompt(user_turn(text, plan["persona"]))
            gen = self.backend.generate(prompt, SamplingParams(max_tokens=self.spec.max_new_tokens, temperature=plan["temperature"]), rng)
            meta = {"request": r, "temperature": plan["temperature"], "persona": plan["persona"], "model": self.backend.model_id}
            out += [Candidate(p, "model", "; ".join(plan["transforms"]), meta)
                    for p in self.kind.parse(gen.text)[: self.spec.variants_per_request]]
        return out

    def expand(self, node: dict[str, Any]) -> int:
        """Add ``node``'s valid, new variants as its children; returns how many."""
        rng = _node_rng(self.spec.seed, node["id"])
        cands = self._candidates(node, rng)
        rejected: Counter[str] = Counter()
        made = sum(1 for n in self.nodes if n["parent"] == node["id"])  # children written before a kill
        tried: set[str] = set()
        for c in cands:
            if c.payload in tried:
                rejected["duplicate"] += 1
                continue
            tried.add(c.payload)
            v = self.kind.validate(c.payload)
            if not v.get("ok"):
                rejected[_reason(v["why"])] += 1
            elif v["key"] in self.exclude:
                rejected["in the excluded (test) set"] += 1
            elif v["key"] in self.keys:
                rejected["duplicate"] += 1
            else:
                self._add({"id": f"{node['id']}.{made}", **v["row"], "category": f"depth{node['depth'] + 1}",
                           "parent": node["id"], "root": node["root"], "depth": node["depth"] + 1, "source": c.source,
                           "transform": c.transform, "key": v["key"], "meta": c.meta})
                made += 1
        new = sum(1 for n in self.nodes if n["parent"] == node["id"])
        self._append(self.log_path, {"expanded": node["id"], "children": new, "candidates": len(cands), "rejected": dict(rejected)})
        self.expanded.add(node["id"])
        self.rejected.update(rejected)
        self.progress(f"{node['id']}: {new} variants from {len(cands)} candidates"
                      + (f" (rejected: {dict(rejected)})" if rejected else ""))
        return new

    def grow(self) -> list[dict[str, Any]]:
        """Expand every unexpanded node above the depth cap, level by level; returns all nodes."""
        for depth in range(self.spec.depth):
            for node in [n for n in self.nodes if n["depth"] == depth and n["id"] not in self.expanded]:
                self.expand(node)
        return self.nodes


def build_tree(problems: Sequence[Problem], kind: VariantKind, spec: TreeSpec, path: str | Path | None = None, *,
               backend: Backend | None = None, exclude_keys: set[str] | None = None,
               progress: Callable[[str], None] | None = None) -> TreeBuilder:
    """Build (or finish) the variant tree of ``problems``; returns the builder (``.nodes``, ``.rejected``)."""
    if not problems:
        raise StropError("no problems to build a variant tree from")
    b = TreeBuilder(kind, spec, Path(path) if path is not None else None, backend=backend,
                    exclude_keys=exclude_keys, progress=progress)
    skipped = b.add_roots(problems)
    if skipped and progress:
        progress(f"left out {skipped} problems that are in the excluded set")
    b.grow()
    return b


def tree_summary(nodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts per depth and per source."""
    return {"nodes": len(nodes),
            "per_depth": dict(sorted(Counter(f"depth{n['depth']}" for n in nodes).items())),
            "per_source": dict(Counter(n["source"] for n in nodes))}
