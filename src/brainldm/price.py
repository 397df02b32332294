"""The price of a configured DAG before anything runs: CPU-hours, GPU-hours, memory per rule, disk.

``brainldm-price [snakemake arguments]`` (or ``python -m brainldm.price ...``) runs Snakemake's
dry run with the same arguments (``--profile profiles/slurm --configfile config.paper.yaml
--config nsd_root=... model=...``) in the current directory and adds up the jobs it would run:

* for the rules that :mod:`brainldm.costs` models, the expected CPU-hours and peak memory from
  the inputs' sizes and the paper-scale rehearsal's measurements (the machine of
  ``data/job_costs.json``), and the size of their outputs;
* for every rule, what its jobs reserve from the scheduler (``runtime`` x ``threads``, and
  ``runtime`` x GPUs for the jobs the profile gives a GPU: ``gpu`` or ``gres``).

Each job's expected cost is recorded by the rules' resource functions during the dry run
(``BRAINLDM_PRICE`` names the file), so the price is that of the DAG Snakemake builds, with the
same sizes as the requests ``snakemake -n`` shows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DryRunJob", "RulePrice", "parse_dry_run", "dag_order", "read_costs", "price_table", "format_price", "main"]

_RULE = re.compile(r"^(?:local)?rule (\S+):$")
_PAIR = re.compile(r"(\w+)=([^,]*)")


@dataclass
class DryRunJob:
    """One job of a dry run: its rule, wildcards, threads and resources as Snakemake prints them."""

    rule: str
    wildcards: dict = field(default_factory=dict)
    threads: int = 1
    resources: dict = field(default_factory=dict)
    inputs: tuple = ()
    outputs: tuple = ()

    @property
    def gpus(self) -> int:
        """GPUs asked for: ``gpu=N``, or ``gres=gpu[:model]:N``."""
        found = re.search(r"gpu(?::[\w-]+)?:(\d+)", self.resources.get("gres", ""))
        return int(self.number("gpu") or 0) or (int(found.group(1)) if found else 0)

    def number(self, key: str) -> float | None:
        value = str(self.resources.get(key, "")).strip()
        return float(value) if re.fullmatch(r"[0-9.]+", value) else None


def parse_dry_run(text: str) -> list[DryRunJob]:
    """The jobs of ``snakemake --dry-run``'s output (one block per job, from ``rule <name>:``)."""
    jobs, job = [], None
    for line in text.splitlines():
        if not line.startswith("    "):  # a job's block ends at the first line that is not indented
            found = _RULE.match(line.strip())
            job = DryRunJob(found.group(1)) if found else None
            jobs += [job] if job else []
            continue
        if job is None:
            continue
        key, _, value = line.strip().partition(": ")
        if key == "wildcards":
            job.wildcards = {k: v.strip() for k, v in _PAIR.findall(value)}
        elif key == "threads":
            job.threads = int(value)
        elif key == "resources":
            job.resources = {k: v.strip() for k, v in _PAIR.findall(value)}
        elif key in ("input", "output"):
            files = tuple(f.strip() for f in value.split(", ") if f.strip())
            setattr(job, f"{key}s", files)
    return [j for j in jobs if j.rule != "all"]


def dag_order(jobs: Sequence[DryRunJob]) -> list[str]:
    """The rules in the DAG's order: by the depth of their shallowest job (the longest chain of jobs
    before it, from the files each job reads and writes), then by name. The dry run prints jobs in
    the scheduler's order, which differs between runs of the same DAG."""
    producer = {path: index for index, job in enumerate(jobs) for path in job.outputs}
    depth: dict[int, int] = {}

    def depth_of(index: int) -> int:
        if index not in depth:
            depth[index] = 0  # a guard against cycles, which a DAG has none of
            parents = {producer[path] for path in jobs[index].inputs if path in producer} - {index}
            depth[index] = 1 + max((depth_of(p) for p in parents), default=-1)
        return depth[index]

    shallowest: dict[str, int] = {}
    for index, job in enumerate(jobs):
        shallowest[job.rule] = min(shallowest.get(job.rule, depth_of(index)), depth_of(index))
    return sorted(shallowest, key=lambda rule: (shallowest[rule], rule))


def _key(rule: str, wildcards: dict) -> tuple:
    return rule, tuple(sorted(wildcards.items()))


def read_costs(path: str | os.PathLike) -> dict[tuple, dict | None]:
    """(rule, wildcards) -> the expected cost recorded by the rules' resource functions (see module doc)."""
    costs = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            record = json.loads(line)
            costs[_key(record["rule"], record["wildcards"])] = record["cost"]
    return costs


@dataclass
class RulePrice:
    """A rule's jobs added up."""

    rule: str
    jobs: int = 0
    gpu_jobs: int = 0
    expected_cpu_h: float | None = None  # modelled rules only
    expected_peak_gb: float | None = None  # the largest job's
    reserved_core_h: float = 0.0  # runtime x threads
    reserved_gpu_h: float = 0.0  # runtime x GPUs
    requested_mem_gb: float = 0.0  # the largest job's request
    outputs_gb: float | None = None


def price_table(jobs: Sequence[DryRunJob], costs: dict) -> list[RulePrice]:
    """Per rule (in the DAG's order, :func:`dag_order`): jobs, expected and reserved hours, memory and outputs."""
    rules: dict[str, RulePrice] = {rule: RulePrice(rule) for rule in dag_order(jobs)}
    for job in jobs:
        row = rules.setdefault(job.rule, RulePrice(job.rule))
        row.jobs += 1
        runtime_h = (job.number("runtime") or 0) / 60
        if job.gpus:
            row.gpu_jobs += 1
            row.reserved_gpu_h += runtime_h * job.gpus
        else:
            row.reserved_core_h += runtime_h * job.threads
        row.requested_mem_gb = max(row.requested_mem_gb, (job.number("mem_mb") or 0) / 1000)
        cost = costs.get(_key(job.rule, job.wildcards))
        if cost is None:
            continue
        row.outputs_gb = (row.outputs_gb or 0.0) + cost["output_mb"] / 1024
        if cost["cpu_s"] is not None:
            row.expected_cpu_h = (row.expected_cpu_h or 0.0) + cost["cpu_s"] / 3600
            row.expected_peak_gb = max(row.expected_peak_gb or 0.0, cost["peak_mb"] / 1024)
    return list(rules.values())


def _cell(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_price(rows: Sequence[RulePrice], machine: str = "") -> str:
    """The price as a Markdown table with totals."""
    lines = ["| rule | jobs | expected CPU-h | expected peak GB / job | reserved core-h | reserved GPU-h "
             "| mem requested GB / job | outputs GB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        jobs = f"{r.jobs}" + (f" ({r.gpu_jobs} GPU)" if r.gpu_jobs else "")
        lines.append(f"| {r.rule} | {jobs} | {_cell(r.expected_cpu_h)} | {_cell(r.expected_peak_gb)} | "
                     f"{_cell(r.reserved_core_h if r.reserved_core_h else None)} | "
                     f"{_cell(r.reserved_gpu_h if r.reserved_gpu_h else None)} | {_cell(r.requested_mem_gb)} | "
                     f"{_cell(r.outputs_gb)} |")
    expected = sum(r.expected_cpu_h or 0 for r in rows)
    lines.append(f"| **total** | {sum(r.jobs for r in rows)} | **{expected:,.0f}** | "
                 f"{_cell(max((r.expected_peak_gb or 0 for r in rows), default=0))} | "
                 f"{sum(r.reserved_core_h for r in rows):,.0f} | **{sum(r.reserved_gpu_h for r in rows):,.0f}** | "
                 f"{_cell(max((r.requested_mem_gb for r in rows), default=0))} | "
                 f"**{sum(r.outputs_gb or 0 for r in rows):,.0f}** |")
    notes = ["", "expected: the rules brainldm.costs models (from the inputs' sizes and the paper-scale "
             f"rehearsal{' on ' + machine if machine else ''}); reserved: what the jobs ask the scheduler for "
             "(runtime x threads, runtime x GPUs), an upper bound. GPU rules are not measured yet: their "
             "reserved hours are their rules' requests. Outputs: the modelled rules' files."]
    return "\n".join(lines + notes) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the dry run with ``argv`` (Snakemake's arguments) and print the price; Snakemake's exit status."""
    from .costs import coefficients

    argv = list(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory() as tmp:
        record = Path(tmp) / "costs.jsonl"
        result = subprocess.run([sys.executable, "-m", "snakemake", "--dry-run", *argv], capture_output=True,
                                text=True, env={**os.environ, "BRAINLDM_PRICE": str(record)})
        if result.returncode != 0:
            sys.stderr.write(result.stdout[-5000:] + result.stderr[-5000:])
            return result.returncode
        rows = price_table(parse_dry_run(result.stdout), read_costs(record))
    machine = coefficients().get("machine", {})
    described = f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores" if machine else ""
    sys.stdout.write(format_price(rows, described))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
