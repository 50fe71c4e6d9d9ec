"""A small, realistic archive for the review tests (CLI, export/import, web, browser).

Built through the real store API into a real SQLite file: a kernel run with a lineage
(branches, a long chain, failures, a duplicate), two hardware fingerprints on two
backends, MAP-Elites features and lessons; and an architecture run with three objectives
and a known Pareto front. ``hostile=True`` puts script payloads into every text field a
page shows, for the escaping tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daedalus.archive import store
from daedalus.archive.db import open_archive

# Each payload sets a flag (or opens a dialog) if it ever runs in a browser.
SCRIPT = "<script>window.__pwned = 'script'; alert(1)</script>"
IMG = "<img src=x onerror=\"window.__pwned='img'; alert(2)\">"
SVG = "<svg onload=\"window.__pwned='svg'\"></svg>"
PAYLOAD = f"{SCRIPT}{IMG}{SVG}"

CPU_FP = {"cpu": "Test CPU 9000", "cores": 2, "torch": "2.13.0"}
GPU_FP = {"gpu": "Test GPU 1", "cuda": "12.4", "torch": "2.13.0"}


def kernel_code(i: int, extra: str = "") -> str:
    return (
        "import torch\n\n\n"
        "class ModelNew(torch.nn.Module):\n"
        f"    def forward(self, x):\n"
        f"        # variant {i}{extra}\n"
        f"        return x * torch.sigmoid(x) * {1 + i / 100:.2f}\n"
    )


@dataclass
class Built:
    url: str
    kernel_run: str = ""
    arch_run: str = ""
    ids: dict[str, str] = field(default_factory=dict)
    front: set[str] = field(default_factory=set)


def build(url: str, *, hostile: bool = False, chain: int = 12) -> Built:
    """Fill the archive at ``url``; returns the ids the tests look for."""
    text = PAYLOAD if hostile else ""
    out = Built(url)
    with open_archive(url) as archive, archive.session() as s:
        run = store.create_run(
            s,
            task="swish_scale" + (f" {IMG}" if hostile else ""),
            config={"iterations": 40},
            model="openai/stub",
            run_id="aaaa11112222",
        )
        out.kernel_run = run.id
        seed = store.add_candidate(
            s,
            run_id=run.id,
            code=kernel_code(0),
            code_hash="h0",
            mode="seed",
            description="the reference" + text,
        )
        store.record_evaluation(
            s,
            candidate_id=seed.id,
            status="ok",
            correct=True,
            score=1.0,
            speedup=1.0,
            metrics={"ref_ms": 2.0, "cand_ms": 2.0},
            objectives={"speedup": 1.0},
            fingerprint=CPU_FP,
            backend="cpu",
            sandbox="process",
            logs="seed timing" + text,
        )
        store.set_features(
            s,
            candidate_id=seed.id,
            features={"approach": "eager", "code_size": 1},
            cell="approach=eager|code_size=1",
        )
        out.ids["seed"] = seed.id
        parent = seed
        # A long single-child chain (folded in trees), scores rising.
        for i in range(1, chain + 1):
            c = store.add_candidate(
                s,
                run_id=run.id,
                code=kernel_code(i),
                code_hash=f"h{i}",
                parent_id=parent.id,
                description=f"step {i} fused the chain" + text,
                prompt="make it faster" + text,
                iteration=i,
            )
            gpu = i % 3 == 0
            store.record_evaluation(
                s,
                candidate_id=c.id,
                status="ok",
                correct=True,
                score=1.0 + i / 10,
                speedup=1.0 + i / 10,
                metrics={"ref_ms": 2.0, "cand_ms": 2.0 / (1 + i / 10)},
                objectives={"speedup": 1.0 + i / 10},
                fingerprint=GPU_FP if gpu else CPU_FP,
                backend="cuda" if gpu else "cpu",
                sandbox="process",
                logs=f"run {i}" + text,
            )
            approach = ("eager", "compiled", "cpp")[i % 3]
            store.set_features(
                s,
                candidate_id=c.id,
                features={"approach": approach, "code_size": i % 2},
                cell=f"approach={approach}|code_size={i % 2}",
            )
            parent = c
        out.ids["best"] = parent.id
        out.ids["chain_mid"] = store.lineage(s, candidate_id=parent.id)[chain // 2].id
        # Branches off the seed: a failure, a rejected one, a duplicate, a pending one.
        bad = store.add_candidate(
            s,
            run_id=run.id,
            code="def broken(:\n" + (f"# {SCRIPT}\n" if hostile else ""),
            code_hash="bad",
            parent_id=seed.id,
            description="a typo" + text,
        )
        store.record_evaluation(
            s,
            candidate_id=bad.id,
            status="compile_error",
            error="SyntaxError: invalid syntax" + text,
            logs="Traceback (most recent call last):\n  ...\nSyntaxError" + text,
            backend="cpu",
            fingerprint=CPU_FP,
        )
        out.ids["bad"] = bad.id
        wrong = store.add_candidate(
            s, run_id=run.id, code=kernel_code(99, " wrong"), code_hash="w", parent_id=seed.id
        )
        store.record_evaluation(
            s,
            candidate_id=wrong.id,
            status="incorrect",
            error="max abs diff 0.5 > atol",
            backend="cpu",
            fingerprint=CPU_FP,
        )
        out.ids["wrong"] = wrong.id
        dup = store.add_candidate(
            s,
            run_id=run.id,
            code=kernel_code(1),
            code_hash="h1",
            parent_id=seed.id,
            duplicate_of=out.ids["seed"],
            duplicate_kind="exact",
        )
        out.ids["dup"] = dup.id
        pending = store.add_candidate(
            s, run_id=run.id, code=kernel_code(77), code_hash="p", parent_id=parent.id
        )
        out.ids["pending"] = pending.id
        store.add_lesson(
            s,
            run_id=run.id,
            task=run.task,
            iteration=5,
            text="fusing sigmoid and mul pays off" + text,
        )
        store.add_spend(
            s,
            run_id=run.id,
            iterations=chain + 4,
            prompt_tokens=1200,
            completion_tokens=800,
            cost_usd=0.0123,
            device_seconds=3.5,
        )

        arch = store.create_run(
            s,
            task="mqar",
            kind="architecture",
            run_id="bbbb33334444",
            config={
                "iterations": 10,
                "objectives": [
                    {"name": "accuracy", "direction": "max"},
                    {"name": "params", "direction": "min"},
                ],
            },
        )
        out.arch_run = arch.id
        # (accuracy, params): the front is a, b, c; d and e are dominated.
        points = {
            "a": (0.90, 5000.0),
            "b": (0.80, 2000.0),
            "c": (0.95, 9000.0),
            "d": (0.85, 6000.0),
            "e": (0.70, 3000.0),
        }
        first = None
        for name, (acc, params) in points.items():
            objectives = {"accuracy": acc, "params": params}
            if hostile:
                objectives[f"latency {IMG}"] = 1.0
            c = store.add_candidate(
                s,
                run_id=arch.id,
                code=f"# design {name}\n" + kernel_code(len(out.ids)),
                code_hash=f"a-{name}",
                parent_id=first,
                description=f"design {name}",
            )
            first = first or c.id
            store.record_evaluation(
                s,
                candidate_id=c.id,
                status="ok",
                correct=True,
                score=acc,
                objectives=objectives,
                metrics={"train_s": 1.5},
                backend="cpu",
                fingerprint=CPU_FP,
            )
            out.ids[f"arch_{name}"] = c.id
        out.front = {out.ids["arch_a"], out.ids["arch_b"], out.ids["arch_c"]}
        store.update_run_status(s, run_id=arch.id, status="finished")
    return out
