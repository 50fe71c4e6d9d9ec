"""The architecture cascade, run inside the sandbox child (the fork server's, like kernels).

static policy -> data -> compile -> checks (parameter cap, shape, causality, batch and
length independence, complexity scaling) -> proxy training -> threshold -> full training
with early stopping -> causality of the trained model -> latency -> objectives and score.

The first failing stage decides the status. Everything is seeded from the task's seed and
runs on ``Limits.threads`` torch threads, both recorded in the metrics, so the same design
trains to the same numbers on the same machine. See docs/architectures.md for the score.
"""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy
import torch

from daedalus.sandbox import arch_checks as checks
from daedalus.sandbox.backends import CandidateFailure, get_backend
from daedalus.sandbox.backends import compare as C
from daedalus.sandbox.result import Limits, Status
from daedalus.sandbox.static import check_candidate
from daedalus.tasks.architectures import data as datasets
from daedalus.tasks.architectures import interfaces
from daedalus.tasks.model import TaskError

Emit = Callable[[dict[str, Any]], None]
_manual_seed, _random_seed, _numpy_seed = torch.manual_seed, random.seed, numpy.random.seed
_LATENCY_ROUNDS = 15


def _seed(seed: int) -> None:
    _manual_seed(seed)
    _random_seed(seed)
    _numpy_seed(seed % 2**32)


def _better(metric: str, a: float, b: float, margin: float = 0.0) -> bool:
    """Whether ``a`` beats ``b`` by more than ``margin`` on ``metric``."""
    return a < b - margin if metric == "bpc" else a > b + margin


def _factory(cls: type, kwargs: dict[str, Any], stage: str) -> Callable[[], torch.nn.Module]:
    def make() -> torch.nn.Module:
        try:
            module = cls(**kwargs)
        except BaseException as exc:
            raise CandidateFailure(Status.COMPILE_ERROR, stage, f"ModelNew(**{kwargs}) raised "
                                   f"{C.failure_text(exc)}") from None
        if not isinstance(module, torch.nn.Module):
            raise CandidateFailure(Status.COMPILE_ERROR, stage, "ModelNew(...) did not build an "
                                   "nn.Module; subclass torch.nn.Module.")
        return module

    return make


class Trainer:
    """AdamW with linear warm-up and cosine decay over the full budget; the proxy is its
    first ``proxy_steps`` steps, so passing candidates continue rather than restart."""

    def __init__(self, model: torch.nn.Module, data: datasets.Dataset, budget: dict[str, Any],
                 metric: str, seed: int) -> None:
        self.model, self.data, self.budget, self.metric = model, data, budget, metric
        self.opt = torch.optim.AdamW(model.parameters(), lr=budget["lr"],
                                     weight_decay=budget["weight_decay"])
        total, warm = budget["full_steps"], max(1, budget["warmup_steps"])
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: min(
            (s + 1) / warm, 0.5 * (1 + math.cos(math.pi * min(s, total) / max(total, 1)))))
        self.order = torch.Generator().manual_seed(seed + 7)
        self.step = 0
        self.curve: list[tuple[int, float]] = []
        self.best = math.inf if metric == "bpc" else -math.inf
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale = 0
        self.last_loss = math.nan

    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.randint(0, len(self.data.train_x), (self.budget["batch_size"],),
                              generator=self.order)
        return self.data.train_x[index], self.data.train_y[index]

    def train(self, until: int, deadline: float) -> str:
        """Train to step ``until``; returns why it stopped: budget, target, plateau or time."""
        C._set_grad_enabled(True)
        self.model.train()
        every = max(1, self.budget["eval_every"])
        while self.step < until:
            x, y = self._batch()
            try:
                loss = interfaces.loss(self.model(x), y)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
            except CandidateFailure:
                raise
            except BaseException as exc:
                raise CandidateFailure(Status.RUNTIME_ERROR, "train", f"training step "
                                       f"{self.step}: {C.failure_text(exc)}") from None
            self.last_loss = float(loss.detach())
            if not math.isfinite(self.last_loss):
                raise CandidateFailure(Status.INCORRECT, "train", f"training diverged: the loss "
                                       f"is {self.last_loss} at step {self.step}; stabilise the "
                                       "design (normalise, bound the state, scale the init).")
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.opt.step()
            self.sched.step()
            self.step += 1
            if self.step % every == 0 or self.step == until:
                why = self.evaluate()
                if why:
                    return why
            if C.clock() > deadline:
                self.evaluate()
                return "time"
        return "budget"

    def evaluate(self) -> str:
        value = interfaces.evaluate(self.model, self.data)[self.metric]
        if self.curve and self.curve[-1][0] == self.step:
            return ""
        self.curve.append((self.step, value))
        if _better(self.metric, value, self.best, self.budget["min_delta"]):
            self.stale = 0
        else:
            self.stale += 1
        if _better(self.metric, value, self.best):
            self.best = value
            self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        target = self.budget["target"]
        if (self.metric == "bpc" and target > 0 and value <= target) or (
                self.metric != "bpc" and value >= target):
            return "target"
        if self.step >= self.budget["proxy_steps"] and self.stale >= self.budget["patience"]:
            return "plateau"
        return ""

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def _reference_factory(spec: dict[str, Any], kwargs: dict[str, Any], workdir: Path,
                       name: str) -> Callable[[], torch.nn.Module]:
    settings = spec["settings"]
    file_name = settings["references"][name]
    source = spec["files"][file_name]
    namespace: dict[str, Any] = {"__name__": f"daedalus_reference_{name}"}
    try:
        exec(compile(source, str(workdir / file_name), "exec"), namespace)  # trusted task code
        return lambda: namespace["ModelNew"](**kwargs)
    except Exception as exc:
        raise TaskError(f"{spec['path']}: reference design {name!r} ({file_name}) failed to "
                        f"build: {type(exc).__name__}: {exc}; fix the design file") from exc


def _latency(model: torch.nn.Module, reference: torch.nn.Module | None, x: torch.Tensor,
             threads: int, budget_s: float = 3.0) -> tuple[float, float | None, str]:
    """Median forward milliseconds of the model and the reference, measured interleaved, and
    the clock used (thread CPU time on one thread unless other threads did work)."""
    C._set_grad_enabled(False)
    model.eval()
    pair = [model] if reference is None else [model, reference.eval()]
    clock, name = checks.timing_clock(threads)
    for attempt in range(2):
        times: list[list[float]] = [[] for _ in pair]
        for m in pair:
            m(x)  # warm-up
        began = C.clock()
        process0, thread0 = checks._process_clock(), checks._thread_clock()
        for _ in range(_LATENCY_ROUNDS):
            for i, m in enumerate(pair):
                t0 = clock()
                m(x)
                times[i].append(clock() - t0)
            if C.clock() - began > budget_s and len(times[0]) >= 3:
                break
        if name != "thread_cpu" or not checks.other_threads_worked(process0, thread0) or attempt:
            break
        clock, name = C.clock, "wall"  # work ran where the thread clock cannot see it
    ms = [statistics.median(t) * 1e3 for t in times]
    return ms[0], (ms[1] if reference is not None else None), name


def score_of(metric: str, value: float, params: int, latency_ratio: float | None,
             score: dict[str, Any]) -> float:
    """The archive's scalar: the primary metric (accuracy, or 2^-bpc, the geometric-mean
    probability of the next token) minus log2 penalties for growing past the parameter
    reference and for being slower than the latency reference; never below 0."""
    primary = 2.0 ** -value if metric == "bpc" else value
    penalty = 0.0
    if score["params_ref"] > 0 and score["params_weight"] > 0:
        penalty += score["params_weight"] * max(0.0, math.log2(params / score["params_ref"]))
    if latency_ratio is not None and score["latency_weight"] > 0:
        penalty += score["latency_weight"] * max(0.0, math.log2(latency_ratio))
    return max(0.0, primary - penalty)


def _checks(interface: str, make: Callable[[], torch.nn.Module], settings: dict[str, Any],
            data: datasets.Dataset, result: dict[str, Any], threads: int) -> None:
    cfg, tol = settings["checks"], checks.tolerance_of(settings)
    fresh = make().eval()
    result["metrics"]["candidate_params"] = float(checks.check_params(fresh, cfg["max_params"]))
    x = interfaces.probe(interface, settings, data, batch=4, seed=1)
    expected = tuple(x.shape) if interface == "sequence_mixer" else (4, data.classes)
    checks.check_shape(fresh, x, expected)

    def forward(inp: torch.Tensor) -> torch.Tensor:
        return checks.run(fresh, inp, "checks", f"input of shape {tuple(inp.shape)}")

    if cfg["causal"]:
        checks.check_causality(forward, x, tol)
    if cfg["batch_independent"]:
        checks.check_batch(forward, x, tol)
    if cfg["length_independent"] and interface == "sequence_mixer":
        checks.check_length(fresh, x, tol)
    if cfg["subquadratic"] and interface == "sequence_mixer":
        def probe(n: int) -> torch.Tensor:
            return interfaces.probe(interface, settings, data, batch=1, length=n, seed=2)

        work = checks.measure_work(fresh, probe, cfg["complexity_length"])
        found = checks.judge_complexity(lambda: checks.measure_complexity(
            fresh, probe, cfg["complexity_length"], threads=threads),
            cfg["max_exponent"] + checks.TIME_SLACK)
        result["metrics"].update(complexity_exponent=checks.worst_exponent(found),
                                 work_exponent=checks.worst_exponent(work))
        result["artifacts"]["complexity_ms"] = {str(n): s * 1e3 for n, s in
                                                zip(found.lengths, found.seconds, strict=True)}
        checks.check_complexity(found, cfg["max_exponent"], work)


def run_architecture(req: dict[str, Any], workdir: Path, emit: Emit) -> dict[str, Any]:
    """Evaluate ``req["code"]`` on an architecture task; the dict is the harness's result.

    Raises ``TaskError`` when the task is broken; every candidate failure is data.
    """
    limits = Limits(**req.get("limits", {}))
    spec, code = req["task"], req["code"]
    settings: dict[str, Any] = spec["settings"]
    interface, budget, metric = settings["interface"], settings["budget"], settings["score"]["metric"]
    result: dict[str, Any] = {"metrics": {}, "flags": [], "artifacts": {}, "correct": False,
                              "speedup": None, "functional_hash": None, "error": None,
                              "objectives": {}, "score": 0.0}  # fmt: skip
    marks: list[tuple[str, float]] = []

    def stage(name: str) -> None:
        marks.append((name, C.clock()))
        result["stage"] = name
        emit({"event": "stage", "stage": name})

    # The training deadline leaves room for the checks after it inside the sandbox timeout.
    deadline = C.clock() + min(float(budget["time_limit_s"]), 0.8 * limits.timeout_s - 5.0)
    torch.set_num_threads(limits.threads)
    result["metrics"].update(threads=float(torch.get_num_threads()), seed=float(spec["seed"]))
    try:
        stage("static")
        if limits.policy and (violations := check_candidate(code)):
            status = Status.COMPILE_ERROR if violations[0].rule == "syntax" else Status.REJECTED
            raise CandidateFailure(status, "static", "; ".join(str(v) for v in violations))
        stage("data")
        try:
            data = datasets.make(settings["generator"], spec["seed"], settings["data"])
        except (ValueError, RuntimeError, OSError) as exc:
            raise TaskError(f"{spec['path']}: the [data] section does not generate: {exc}") from exc
        stage("compile")
        module = get_backend(req.get("backend", "cpu")).compile(code, workdir)
        kwargs = interfaces.init_kwargs(interface, settings)
        make = _factory(module.ModelNew, kwargs, "compile")
        stage("checks")
        _seed(spec["seed"])
        _checks(interface, make, settings, data, result, limits.threads)

        stage("proxy")
        _seed(spec["seed"])
        model = interfaces.build(interface, make, settings, data)
        params = checks.count_params(model)
        trainer = Trainer(model, data, budget, metric, spec["seed"])
        why = trainer.train(budget["proxy_steps"], deadline)
        if not trainer.curve:
            trainer.evaluate()
        proxy = trainer.curve[-1][1]
        result["metrics"][f"proxy_{metric}"] = proxy
        threshold = float(budget["proxy_threshold"])
        if threshold and not (proxy <= threshold if metric == "bpc" else proxy >= threshold):
            raise CandidateFailure(Status.INCORRECT, "proxy", f"proxy training reached {metric} "
                                   f"{proxy:.4g} after {trainer.step} steps, short of the "
                                   f"threshold {threshold:g} for the full budget (chance level "
                                   f"{data.chance:.3g}); the design does not learn this task.")
        stage("train")
        if why == "budget":
            why = trainer.train(budget["full_steps"], deadline)
        trainer.restore_best()
        C.check_side_effects("train", "after training")
        values = interfaces.evaluate(model, data, "test")  # never seen by early stopping
        result["metrics"].update(values)
        result["metrics"][f"val_{metric}"] = trainer.best
        result["metrics"].update(steps=float(trainer.step), params=float(params),
                                 stopped_early=float(why in ("target", "plateau")),
                                 full_budget=1.0)  # fmt: skip
        result["artifacts"]["learning_curve"] = trainer.curve
        result["artifacts"]["stopped"] = why
        if why == "time":
            result["flags"].append("time_capped")

        stage("verify")
        model.eval()
        if settings["checks"]["causal"] and interface == "sequence_mixer":
            tokens = data.val_x[:4]

            def logits(t: torch.Tensor) -> torch.Tensor:
                return checks.run(model, t, "verify", "the trained model")

            def scramble(t: torch.Tensor, cut: int) -> torch.Tensor:
                out = t.clone()
                out[:, cut:] = torch.randint(0, data.vocab, out[:, cut:].shape,
                                             generator=torch.Generator().manual_seed(cut))
                return out

            checks.check_causality(logits, tokens, checks.tolerance_of(settings), stage="verify",
                                   perturb=scramble)
        stage("latency")
        reference = None
        if (ref_name := settings["score"]["latency_reference"]):
            _seed(spec["seed"])
            make_ref = _reference_factory(spec, kwargs, workdir, ref_name)
            reference = interfaces.build(interface, make_ref, settings, data)
        sample = data.val_x[: budget["latency_batch"]]
        latency, ref_latency, clock_name = _latency(model, reference, sample, limits.threads)
        result["artifacts"]["timing_clock"] = clock_name
        ratio = None if ref_latency is None else latency / ref_latency
        result["metrics"].update(latency_ms=latency)
        if ratio is not None:
            result["metrics"].update(reference_latency_ms=ref_latency, latency_ratio=ratio)
        result["objectives"] = {metric: values[metric], "params": float(params),
                                "latency_ms": latency}
        result["score"] = score_of(metric, values[metric], params, ratio, settings["score"])
        result["correct"] = True
        result["status"] = Status.OK.value
    except CandidateFailure as failure:
        result.update(status=failure.status.value, stage=failure.stage, error=failure.message,
                      correct=False)
    marks.append(("end", C.clock()))
    for (name, start), (_, end) in itertools.pairwise(marks):
        result["metrics"][f"seconds_{name}"] = end - start
    return result
