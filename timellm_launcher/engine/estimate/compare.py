"""--compare: estimate several configurations, each in its own process, and recommend the fastest that fits.

A fresh process per configuration gives each its own memory peak, and an out-of-memory error or a crash in one
configuration cannot take the others down.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from timellm_launcher.core.errors import UserError
from timellm_launcher.engine.estimate.report import memory_text, write_report
from timellm_launcher.engine.progress import duration

# the estimator as a fresh process, wherever the package lives (a checkout or site-packages)
ESTIMATOR = ["-c", "import sys; from timellm_launcher.commands import estimate; sys.exit(estimate())"]
PACKAGE_PARENT = Path(__file__).resolve().parents[3]
COMPARE_SCHEMA = "time-llm-estimate-compare/1"
OWN_FLAGS = ("--compare", "--output")  # the parent's; every child gets its own --output
RENDEZVOUS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class Variant:
    name: str
    flags: list[str]


@dataclass
class Outcome:
    variant: Variant
    status: str  # ok | does not fit | failed
    reason: str
    report: dict[str, Any] | None

    @property
    def total_s(self) -> float | None:
        return self.report["projection"]["total_s"] if self.status == "ok" else None


def parse_compare(spec: str) -> list[Variant]:
    """'name=flags; name=flags' or '@FILE' holding one name=flags per line (# starts a comment)."""
    if spec.startswith("@"):
        path = Path(spec[1:])
        if not path.is_file():
            raise UserError(f"--compare {spec}: file not found")
        entries = [line.split("#", 1)[0] for line in path.read_text(encoding="utf-8").splitlines()]
    else:
        entries = spec.split(";")
    variants: list[Variant] = []
    for entry in (e.strip() for e in entries):
        if not entry:
            continue
        name, sep, flags = entry.partition("=")
        name = name.strip()
        if not sep or not name or " " in name:
            raise UserError(f"--compare: '{entry}' is not name=flags (e.g. \"base=; amp=--use_amp\")")
        if any(v.name == name for v in variants):
            raise UserError(f"--compare: the name '{name}' is used twice")
        try:
            args = shlex.split(flags)
        except ValueError as err:
            raise UserError(f"--compare: cannot split the flags of '{name}' ({err})") from None
        if any(a.split("=", 1)[0] in OWN_FLAGS for a in args):
            raise UserError(f"--compare: configuration '{name}' may not set --compare or --output")
        variants.append(Variant(name, args))
    if not variants:
        raise UserError("--compare: no configuration given (e.g. \"base=; amp=--use_amp\")")
    return variants


def base_arguments(argv: list[str]) -> list[str]:
    """The command line without the parent's own --compare/--output (both `--flag value` and `--flag=value`)."""
    base, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in OWN_FLAGS:
            skip = True
            continue
        if arg.split("=", 1)[0] in OWN_FLAGS:
            continue
        base.append(arg)
    return base


def classify(returncode: int, report: dict[str, Any] | None, stderr: str) -> tuple[str, str]:
    """(status, reason) of a finished child."""
    if report is not None and report.get("status") == "ok" and returncode == 0:
        return "ok", ""
    if report is not None and report.get("status") == "does_not_fit":
        return "does not fit", report.get("error", "out of memory")
    if returncode in (-9, 137):  # SIGKILL: on Linux almost always the kernel's out-of-memory killer
        return "does not fit", "killed (SIGKILL), most likely out of host memory"
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "failed", lines[-1].strip() if lines else f"exit code {returncode}"


def run_variant(base: list[str], variant: Variant, folder: Path, index: int) -> Outcome:
    output = folder / f"{index}.json"
    env = {k: v for k, v in os.environ.items() if k not in RENDEZVOUS}  # each child makes its own rendezvous
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run([sys.executable, *ESTIMATOR, *base, *variant.flags, "--output", str(output)],
                          capture_output=True, text=True, env=env)
    report = json.loads(output.read_text()) if output.is_file() else None
    status, reason = classify(proc.returncode, report, proc.stderr)
    return Outcome(variant, status, reason, report)


def format_table(outcomes: list[Outcome]) -> tuple[str, str | None]:
    """The comparison table and the name of the recommended configuration (None when nothing fits)."""
    first = outcomes[0].total_s
    rows = [("config", "step", "epoch", "total run", "speed-up", "peak memory", "status")]
    for o in outcomes:
        if o.status == "ok":
            m, p = o.report["measured"], o.report["projection"]
            speedup = f"{first / o.total_s:.2f}x" if first and o.total_s else "-"
            rows.append((o.variant.name, f"{m['step_s']['mean']:.4f} s", duration(p["epoch_s"]),
                         duration(p["total_s"]), speedup, memory_text(m["peak_memory_mb"]), "ok"))
        else:
            rows.append((o.variant.name, "-", "-", "-", "-", "-", f"{o.status}: {o.reason}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    fitting = [o for o in outcomes if o.status == "ok"]
    best = min(fitting, key=lambda o: o.total_s) if fitting else None
    if best is None:
        lines.append("recommendation: none of the configurations could be estimated")
    else:
        vs = f", {first / best.total_s:.2f}x the first" if first else ""
        lines.append(f"recommendation: {best.variant.name} (the fastest that fits: {duration(best.total_s)} for the "
                     f"whole run{vs}; flags: {shlex.join(best.variant.flags) or 'none added'})")
    return "\n".join(lines), best.variant.name if best else None


def run_compare(spec: str, argv: list[str], output: str) -> None:
    """Estimate each configuration in turn, print the table, write the combined JSON when asked."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UserError("--compare starts one process per configuration itself: run it with plain python, "
                        "not under a multi-process launcher")
    variants = parse_compare(spec)
    base = base_arguments(argv)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="estimate-compare-") as folder:
        for i, variant in enumerate(variants):
            print(f"[{i + 1}/{len(variants)}] {variant.name}: {shlex.join(variant.flags) or '(no flags added)'}",
                  flush=True)
            outcome = run_variant(base, variant, Path(folder), i)
            outcomes.append(outcome)
            if outcome.status == "ok":
                p = outcome.report["projection"]
                print(f"    step {outcome.report['measured']['step_s']['mean']:.4f} s, epoch "
                      f"{duration(p['epoch_s'])}, run {duration(p['total_s'])}", flush=True)
            else:
                print(f"    {outcome.status}: {outcome.reason}", flush=True)
    table, best = format_table(outcomes)
    print(table)
    if output:
        first = outcomes[0].total_s
        write_report(output, {"schema": COMPARE_SCHEMA, "base_flags": base, "recommendation": best,
                            "configs": [{"name": o.variant.name, "flags": o.variant.flags, "status": o.status,
                                         "reason": o.reason or None,
                                         "speedup": first / o.total_s if first and o.total_s else None,
                                         "estimate": o.report} for o in outcomes]})
    if best is None:
        raise UserError("--compare: no configuration could be estimated (see the table)")
