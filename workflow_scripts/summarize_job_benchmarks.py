"""Rule summarize_job_benchmarks: wall time, memory and CPU time of every benchmarked job, as one table."""

from brainldm.jobstats import summarize_job_benchmarks
from brainldm.logs import setup_logging

setup_logging(snakemake.log[0])
summarize_job_benchmarks(benchmark_dir=snakemake.params.benchmark_dir, out_tsv=snakemake.output[0])
