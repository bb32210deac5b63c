"""``bench check``: a submission's plug-in contract, verified on tiny synthetic data, in plain words.

Each step either passes or says what is wrong and where, like a validator. Pretrained
submissions are checked from random weights (the weights' download path is tested apart). The
steps that call the submission's code run in a sandboxed worker (``harness.runs.contract``); the
determinism step is two sandboxed runs, scored by the driver like any other.
"""
from __future__ import annotations

import time

import torch

from harness.runs.contract import Finding, tiny_data
from harness.runs.described import Submissions, Variant
from harness.runs.records import RunRecord
from harness.runs.run import Run
from harness.runs.sandboxed import Worker, WorkerFailed


def check_submission(name: str, subs: Submissions, runs: int = 2) -> list[Finding]:
    """Every step of the contract: those in a worker, then two sandboxed runs that must agree
    (``runs=1``: one run, and no determinism step; a committed lock checks that across processes)."""
    try:
        declaration = subs.declaration(name)
        with Worker(declaration.file, subs.settings) as worker:
            answer = worker.ask({"op": "contract", "name": name}, time.monotonic() + 300, f"checking {name}",
                                until="contract")
        findings = [Finding(str(f.get("step")), f.get("ok") is True, str(f.get("message", ""))[:2000])
                    for f in answer.get("findings", []) if isinstance(f, dict)]
    except Exception as err:
        return [Finding("loads", False, str(err))]
    if not findings or not all(f.ok for f in findings):
        return findings
    try:
        records = [tiny_run(subs, name) for _ in range(runs)]
    except WorkerFailed as err:
        return findings + [Finding("runs", False, f"{declaration.file}: {err}")]
    except Exception as err:
        return findings + [Finding("runs", False, f"{declaration.file}: {type(err).__name__}: {err}")]
    if runs < 2:
        return findings + [Finding("runs", True)]
    same = records[0].predictions == records[1].predictions and records[0].curves == records[1].curves
    return findings + [Finding("deterministic on CPU", same,
                               f"{declaration.file}: two runs with the same seed gave different predictions; draw "
                               f"randomness from torch's seeded generators, not from an unseeded source")]


def tiny_run(subs: Submissions, name: str, precision: str = "fp32") -> RunRecord:
    """One sandboxed run of ``name`` on the tiny check data: fold 1, trial 1, one epoch, CPU, random weights."""
    from harness.runs.execute import run_one, task_for

    probe = subs.built(name, Variant(from_random=True))
    spec, data = tiny_data(probe.sample_rate, probe.frontend.get("name") == "Image")
    run = Run(name, spec.name, 1, 1, 1, precision=precision)
    return run_one(task_for(subs, run, spec, from_random=True), spec, run, torch.device("cpu"), data=data,
                   settings=subs.settings)
