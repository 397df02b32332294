"""The price of a DAG before submission: the dry run's jobs, the rules' recorded costs, the README's table."""

from __future__ import annotations

import sys

from brainldm.price import DryRunJob, dag_order, parse_dry_run, price_table
from conftest import REPO

# Snakemake 9's dry run, as it prints two jobs (the SLURM profile gives reconstruct_images a GPU).
DRY_RUN = """\
[Tue Dec  1 16:15:04 2026]
rule encode_feature:
    input: results/subj05/betas/brain.h5, results/subj05/features_pca/z.h5
    output: results/subj05/encoding/z.h5
    log: logs/encoding/encode_feature/subj05_z.log
    jobid: 104
    reason: Missing output files: results/subj05/encoding/z.h5
    wildcards: subject=subj05, feature=z
    threads: 4
    resources: tmpdir=<TBD>, mem_mb=3100, mem=3.1 GB, mem_mib=2957, runtime=250
Shell command: None

[Tue Dec  1 16:15:04 2026]
rule reconstruct_images:
    input: results/subj05/decoding/z.h5, results/subj05/decoding/c.h5
    output: results/subj05/reconstruction/manifest.tsv
    jobid: 7
    wildcards: subject=subj05
    threads: 4
    resources: tmpdir=<TBD>, mem_mb=16000, mem=16 GB, mem_mib=15259, runtime=720, gpu=1
Shell command: None

[Tue Dec  1 16:15:04 2026]
localrule all:
    input: results/job_benchmarks.tsv
    jobid: 0
    resources: tmpdir=/tmp
Job stats:
"""


def test_dry_run_jobs_are_parsed():
    encode, reconstruct = parse_dry_run(DRY_RUN)
    assert (encode.rule, encode.wildcards, encode.threads) == ("encode_feature", {"subject": "subj05", "feature": "z"}, 4)
    assert encode.number("mem_mb") == 3100 and encode.number("runtime") == 250 and encode.gpus == 0
    assert reconstruct.gpus == 1 and reconstruct.number("tmpdir") is None


def test_jobs_add_up_per_rule():
    jobs = parse_dry_run(DRY_RUN)
    costs = {("encode_feature", (("feature", "z"), ("subject", "subj05"))):
             {"cpu_s": 7200.0, "peak_mb": 2048.0, "output_mb": 512.0}}
    encode, reconstruct = price_table(jobs, costs)
    assert encode.expected_cpu_h == 2.0 and encode.expected_peak_gb == 2.0 and encode.outputs_gb == 0.5
    assert encode.reserved_core_h == 250 / 60 * 4 and encode.reserved_gpu_h == 0
    assert reconstruct.expected_cpu_h is None and reconstruct.reserved_gpu_h == 12.0 and reconstruct.gpu_jobs == 1


def test_rules_come_in_the_dags_order_whatever_the_scheduler_printed():
    """The dry run lists jobs in the scheduler's order, which varies between runs: the table does not."""
    chain = [DryRunJob("draw", inputs=("m.nii",), outputs=("f.png",)),
             DryRunJob("encode", inputs=("b.h5", "p.h5"), outputs=("m.nii",)),
             DryRunJob("reduce", inputs=("x.h5",), outputs=("p.h5",)),
             DryRunJob("extract", inputs=("nsd",), outputs=("b.h5",)),
             DryRunJob("gather", inputs=("s1", "s2"), outputs=("x.h5",)),
             DryRunJob("features", outputs=("s1",)), DryRunJob("features", outputs=("s2",))]
    order = ["extract", "features", "gather", "reduce", "encode", "draw"]  # depth, then name
    assert dag_order(chain) == order
    assert dag_order(chain[::-1]) == dag_order(chain[3:] + chain[:3]) == order
    assert [row.rule for row in price_table(chain, {})] == order


def test_readme_price_is_the_papers_dag_priced_now(tmp_path):
    """The README's table is what brainldm-price prints for the paper's configuration on NSD-sized files (the
    committed coefficients, the DAG as the rules build it today); bench/paper_price.py rewrites it."""
    sys.path.insert(0, str(REPO / "bench"))
    from paper_price import paper_price, readme_block

    table = paper_price(tmp_path)
    assert readme_block((REPO / "README.md").read_text()) == table, "rerun bench/paper_price.py"
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "encode_feature" in rows and "104" in rows["encode_feature"]  # 26 features x 4 subjects
    assert "(4 GPU)" in rows["reconstruct_images"]


def test_dry_run_requests_follow_the_inputs(tmp_path):
    """``snakemake -n --profile profiles/slurm`` on NSD-sized files: the heavy jobs' mem_mb and runtime come from
    the sizes read (37 sessions vs 10: more trials to read, more to fit), within a 16 GB node for the CPU jobs."""
    import subprocess

    sys.path.insert(0, str(REPO / "bench"))
    from paper_price import ARGUMENTS, CHECKOUT
    from nsd_headers import build_nsd_headers, build_sd14_configs

    nsd, model = build_nsd_headers(tmp_path / "nsd", subjects=("subj01",)), build_sd14_configs(tmp_path / "sd14")
    work = tmp_path / "work"
    work.mkdir()
    for entry in CHECKOUT:
        (work / entry).symlink_to(REPO / entry)
    requests = {}
    for sessions in ("paper", "[1,2,3,4,5,6,7,8,9,10]"):
        args = [a.format(nsd=nsd, model=model) for a in ARGUMENTS] + ["subjects=[subj01]", f"ingestion={{sessions: {sessions}}}"]
        result = subprocess.run([sys.executable, "-m", "snakemake", "-n", *args], cwd=work, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        jobs = {(j.rule, j.wildcards.get("feature", j.wildcards.get("target", ""))): j for j in parse_dry_run(result.stdout)}
        requests[sessions] = jobs
    paper, fewer = requests["paper"], requests["[1,2,3,4,5,6,7,8,9,10]"]
    for key in (("extract_roi_betas", ""), ("encode_feature", "unet_up_blocks.2_t1"), ("decode_latent", "c"),
                ("reduce_features", "")):
        assert paper[key].number("runtime") > fewer[key].number("runtime"), key
        assert paper[key].number("mem_mb") <= 16_000 * 1.3, key
    # the rules' fixed requests were 240 min and 16,000 MB for every encoding job, whatever its size
    assert paper[("encode_feature", "z")].number("mem_mb") != 16_000
