#!/usr/bin/env bash
# Stand-in for a cluster's submit command: runs Snakemake's jobscript ($1) as its own
# background process and prints its PID as the job id. Used by the tests to prove that no rule
# relies on in-process state; on a real cluster use profiles/slurm or profiles/kubernetes.
nohup bash "$1" >/dev/null 2>&1 &
echo $!
