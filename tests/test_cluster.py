"""Clusters: the profiles parse and cover every rule, the images are the ones the profiles name,
and the tiny DAG runs on a real one-node SLURM cluster (munged, slurmctld and slurmd started
here on the loopback interface) through `snakemake --profile profiles/slurm`, every job
submitted with sbatch, with the same bytes as a local run."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import tomllib
from pathlib import Path

import pytest
import yte
from test_pipeline import digests

from conftest import PROJECT, project_copy, sh

PROFILES = PROJECT / "profiles"
# Resource keys the SLURM executor plugin turns into sbatch options (its documentation and
# submit_string.py / utils.py), plus Snakemake's own standard resources.
SLURM_KEYS = {"runtime", "mem_mb", "mem_mb_per_cpu", "cpus_per_task", "cpus_per_gpu",
              "slurm_partition", "slurm_account", "slurm_extra", "constraint", "qos", "nodes",
              "tasks", "tasks_per_node", "tasks_per_gpu", "mpi", "gres", "gpu", "gpu_model",
              "clusters", "tmpdir", "disk_mb"}
SNAKEMAKE_KEYS = {"tmpdir", "disk_mb"}  # handled by Snakemake itself, not by the plugin
# The Kubernetes executor's resource keys (snakemake-executor-plugin-kubernetes).
KUBERNETES_KEYS = {"mem_mb", "disk_mb", "runtime", "gpu", "gpu_manufacturer", "machine_type",
                   "scale", "tmpdir"}
TRAINING = ("train_classifier", "train_detector")


def load_profile(name: str, env: dict[str, str] | None = None) -> dict:
    """A profile's config.yaml as Snakemake reads it (YAML through YTE, with env set)."""
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        with open(PROFILES / name / "config.yaml") as f:
            return yte.process_yaml(f, require_use_yte=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def rule_blocks() -> dict[str, str]:
    """Every rule of the Snakefile and workflow/rules/*.smk, whichever preset defines it (a
    rule inside an ``if`` is indented): name -> its text."""
    blocks = {}
    for path in [PROJECT / "Snakefile", *sorted((PROJECT / "workflow/rules").glob("*.smk"))]:
        lines = path.read_text().splitlines(keepends=True)
        for i, line in enumerate(lines):
            m = re.match(r"^( *)(?:local)?rule (\w+):$", line.rstrip("\n"))
            if not m:
                continue
            body = []
            for following in lines[i + 1:]:
                if following.strip() and not following.startswith(m.group(1) + " "):
                    break
                body.append(following)
            blocks[m.group(2)] = "".join(body)
    return blocks


def rule_resources(body: str) -> dict[str, str]:
    """The `resources:` entries of one rule's text: key -> value expression."""
    m = re.search(r"^(\s+)resources:\n((?:\1\s+.*\n)+)", body, flags=re.M)
    return dict(re.findall(r"^\s+(\w+)=(.+?),?$", m.group(2), flags=re.M)) if m else {}


def dockerfile_tag(name: str) -> str:
    """The tag that a Dockerfile's documented `docker build` command gives its image."""
    tags = re.findall(r"docker build -f docker/\S+ -t (\S+) \.", (PROJECT / "docker" / name)
                      .read_text())
    assert len(set(tags)) == 1, f"docker/{name} documents one `docker build -t TAG .`: {tags}"
    return tags[0]


def test_every_profile_parses():
    names = sorted(p.name for p in PROFILES.iterdir() if (p / "config.yaml").is_file())
    assert {"slurm", "kubernetes", "local-processes"} <= set(names)
    for name in names:
        try:
            with open(PROFILES / name / "config.yaml") as f:
                profile = yte.process_yaml(f, require_use_yte=True)
        except Exception as exc:
            pytest.fail(f"profiles/{name}/config.yaml does not parse: {exc}")
        assert isinstance(profile, dict) and profile.get("executor"), name
        for key in ("set-resources",):
            assert all(isinstance(v, dict) for v in profile.get(key, {}).values()), name


def test_the_rule_parser_sees_every_rule_of_the_workflow(tmp_path):
    """Every rule that the tiny or the public preset defines, and no other."""
    root = project_copy(tmp_path)
    listed = set(sh(["snakemake", "--list-rules"], root).split())
    shutil.copy(root / "config" / "params-public.yaml", root / "params.yaml")
    public = set(sh(["snakemake", "--list-rules"], root).split())
    assert "extract_lisc" in listed - public and "real_tiles" in public - listed
    assert set(rule_blocks()) == listed | public


def test_every_rule_has_a_runtime_and_memory_in_the_slurm_profile():
    profile = load_profile("slurm")
    assert profile["executor"] == "slurm"
    defaults = profile.get("default-resources", {})
    per_rule = profile.get("set-resources", {})
    rules = rule_blocks()
    assert set(per_rule) <= set(rules), f"profile names unknown rules: {set(per_rule) - set(rules)}"
    for name, body in rules.items():
        if name == "all":  # a target only: Snakemake runs it in-process, never submits it
            continue
        res = {**defaults, **rule_resources(body), **per_rule.get(name, {})}
        assert name in per_rule and "runtime" in per_rule[name], f"{name}: no runtime"
        assert "mem_mb" in rule_resources(body) or "mem_mb" in per_rule.get(name, {}), name
        assert int(res["runtime"]) > 0 and int(res["mem_mb"]) > 0, name
    for name in TRAINING:  # the paper preset trains for many hours, on a GPU
        assert per_rule[name]["runtime"] >= 12 * 60, name
        assert per_rule[name]["gpu"] == 1 and rule_resources(rules[name])["gpu"] == "1", name
    # A CPU-only cluster asks for no GPU, without editing the profile.
    cpu = load_profile("slurm", {"BLOODCELL_GPUS": "0"})["set-resources"]
    assert all(cpu[name]["gpu"] == 0 for name in TRAINING)
    assert "slurm_partition" not in defaults  # the cluster's default partition, or the CLI's


def test_every_resource_key_maps_to_one_the_executors_understand():
    used = {k for body in rule_blocks().values() for k in rule_resources(body)}
    assert used >= {"mem_mb", "gpu"}
    slurm = load_profile("slurm")
    slurm_keys = used | set(slurm.get("default-resources", {}))
    slurm_keys |= {k for v in slurm.get("set-resources", {}).values() for k in v}
    assert slurm_keys <= SLURM_KEYS, slurm_keys - SLURM_KEYS
    try:
        import snakemake_executor_plugin_slurm as plugin
    except ImportError:
        plugin = None
    if plugin is not None:  # the installed plugin really reads each key
        source = "".join(p.read_text() for p in Path(plugin.__file__).parent.glob("*.py"))
        for key in slurm_keys - SNAKEMAKE_KEYS:
            assert re.search(rf"resources(\.get\(\s*[\"']{key}[\"']|\.{key}\b)", source), key
    kube = load_profile("kubernetes")
    kube_keys = used | set(kube.get("default-resources", {}))
    kube_keys |= {k for v in kube.get("set-resources", {}).values() for k in v}
    assert kube_keys <= KUBERNETES_KEYS, kube_keys - KUBERNETES_KEYS
    for name in TRAINING:  # the Kubernetes executor refuses a GPU without its manufacturer
        assert kube["set-resources"][name]["gpu_manufacturer"] == "nvidia"


def test_the_images_are_the_ones_the_profiles_and_the_workflow_name():
    version = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["version"]
    cpu, gpu = dockerfile_tag("Dockerfile"), dockerfile_tag("Dockerfile.gpu")
    assert cpu.endswith(f":{version}") and gpu == f"{cpu}-gpu"
    assert load_profile("kubernetes")["container-image"] == gpu
    common = (PROJECT / "workflow/rules/common.smk").read_text()
    assert f'"BLOODCELL_CONTAINER", "docker://{cpu}"' in common
    assert re.search(r"^container: CONTAINER_IMAGE$", common, flags=re.M)
    for name in ("Dockerfile", "Dockerfile.gpu"):
        text = (PROJECT / "docker" / name).read_text()
        assert re.findall(r"^FROM (\S+)", text, flags=re.M)[-1] == "python:3.11-slim", name
        assert 'ENTRYPOINT ["bloodcell"]' in text, name
        assert ("[gpu]" in text) == (name == "Dockerfile.gpu"), name
        # Every file the build copies is in the context that .dockerignore lets through.
        allowed = [ln[1:].rstrip("/") for ln in (PROJECT / ".dockerignore").read_text()
                   .splitlines() if ln.startswith("!")]
        for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
            for s in src.split():
                assert s.rstrip("/") in allowed, (name, s)
    lines = [ln for ln in (PROJECT / ".dockerignore").read_text().splitlines()
             if ln and not ln.startswith("#")]
    assert lines[0] == "*"  # nothing else: no data/, models/, raw/, .snakemake/, .dvc/cache
    assert {ln for ln in lines if ln.startswith("!")} == {"!pyproject.toml", "!README.md",
                                                         "!bloodcell/"}


# ---------------------------------------------------------------------------------------------
# A one-node SLURM cluster on localhost.

SLURM_TOOLS = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo",
               "scontrol", "scancel")
INSTALL_HINT = "apt-get install slurm-wlm munge (.ci/run does)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """munged, slurmctld and slurmd of one cluster in `root`, talking over 127.0.0.1 only."""

    def __init__(self, root: Path, cpus: int):
        self.root, self.cpus, self.procs = root, cpus, []
        self.conf = root / "slurm.conf"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "SBATCH",
                                                                            "SRUN", "SALLOC"))}
        self.env["SLURM_CONF"] = str(self.conf)
        # A cluster keeps its configuration where every SLURM command finds it without
        # SLURM_CONF (/etc/slurm/slurm.conf); this one must not touch /etc. SLURM_CONF reaches
        # each job (sbatch --export=ALL), but snakemake-executor-plugin-slurm-jobstep (0.6.1)
        # drops SLURM_* variables before the job's `srun`: this srun puts it back.
        bin_dir = root / "bin"
        bin_dir.mkdir()
        srun = bin_dir / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)
        self.env["PATH"] = f"{bin_dir}:{self.env.get('PATH', '')}"

    def write_config(self) -> None:
        r = self.root
        for d in ("munge", "state", "spool", "log"):
            (r / d).mkdir(mode=0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        host = socket.gethostname().split(".")[0]
        self.conf.write_text(f"""\
ClusterName=bloodcelltest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={r}/munge/munge.socket
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups, no accounting database: the executor's status checks use squeue, which keeps
# finished jobs for MinJobAge seconds.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
MinJobAge=3600
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# The node's size is the one configured here (memory is not enforced: no cgroups): requests
# up to the profile's 16 GB for training fit however small the test machine is.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory=32000 State=UNKNOWN
PartitionName=main Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")

    def start(self) -> None:
        self.write_config()
        r = self.root
        self.spawn("munged", ["munged", "--foreground", "--force",
                              f"--socket={r}/munge/munge.socket",
                              f"--key-file={r}/munge/munge.key",
                              f"--pid-file={r}/munge/munged.pid",
                              f"--seed-file={r}/munge/munged.seed",
                              f"--log-file={r}/log/munged.log"])
        self.wait_for(lambda: (r / "munge" / "munge.socket").exists(), "munged's socket")
        self.spawn("slurmctld", ["slurmctld", "-D", "-c", "-f", str(self.conf)])
        self.wait_for(lambda: self.run(["scontrol", "ping"]).returncode == 0
                      and "UP" in self.run(["scontrol", "ping"]).stdout, "slurmctld")
        self.spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(self.conf)])
        self.wait_for(lambda: self.run(["sinfo", "-h", "-N", "-o", "%T"]).stdout.strip()
                      == "idle", "the node to be idle")

    def spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "wb")
        self.procs.append((name, subprocess.Popen(cmd, env=self.env, stdout=out,
                                                  stderr=subprocess.STDOUT,
                                                  start_new_session=True)))

    def run(self, cmd: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)

    def wait_for(self, ready, what: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for name, p in self.procs:
                if p.poll() is not None:
                    pytest.fail(f"{name} exited ({p.returncode}) while waiting for {what}:\n"
                                + self.logs())
            try:
                if ready():
                    return
            except (OSError, subprocess.SubprocessError):
                pass
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}:\n{self.logs()}")

    def logs(self, tail: int = 40) -> str:
        out = []
        for f in sorted((self.root / "log").glob("*")):
            lines = f.read_text(errors="replace").splitlines()[-tail:]
            out.append(f"--- {f.name}\n" + "\n".join(lines))
        return "\n".join(out)

    def stop(self) -> None:
        """Cancel what is left, then end the daemons (and anything they started)."""
        if any(n == "slurmctld" and p.poll() is None for n, p in self.procs):
            try:
                self.run(["scancel", "--cluster", "bloodcelltest", "--user", "root"])
            except (OSError, subprocess.SubprocessError):
                pass
        for name, p in reversed(self.procs):  # slurmd, slurmctld, then munged
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
            try:  # each daemon runs in its own session: nothing of it may outlive the test
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture(scope="module")
def slurm_cluster():
    missing = [t for t in SLURM_TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"SLURM and munge are not installed ({', '.join(missing)} missing): "
                    f"{INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip("slurmd must run as root to start jobs; run the test as root")
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        pytest.skip("snakemake-executor-plugin-slurm is not installed: "
                    "pip install snakemake-executor-plugin-slurm (.ci/run does)")
    # A short path: munged's socket path must stay under the 108 bytes of a unix socket.
    root = Path(tempfile.mkdtemp(prefix="bcslurm-", dir="/tmp"))
    cluster = SlurmCluster(root, cpus=min(2, os.cpu_count() or 1))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_the_tiny_dag_on_a_slurm_cluster_gives_the_bytes_of_a_local_run(slurm_cluster,
                                                                          snakemake_run,
                                                                          tmp_path):
    # Threads decide the trained models' bytes (README "Determinism"): the local run
    # (snakemake_run, 2 cores) gives training 2 threads; --max-threads 2 gives every SLURM job
    # at most the same.
    threads = 2
    if slurm_cluster.cpus < threads:
        pytest.skip(f"the one-node cluster needs {threads} CPUs for training's thread count")
    local = snakemake_run

    (tmp_path / "slurm").mkdir()
    root = project_copy(tmp_path / "slurm")
    shutil.copytree(PROFILES, root / "profiles")
    env = {**slurm_cluster.env, "BLOODCELL_GPUS": "0"}  # the test cluster has no GPU
    cmd = ["snakemake", "--profile", "profiles/slurm", "--max-threads", str(threads),
           "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "5",
           "--slurm-keep-successful-logs", "--retries", "0"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=5400)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{log}\n{slurm_cluster.logs()}"

    # Every job of the DAG (all but the target rule `all`) went through sbatch ...
    total = int(re.search(r"^total\s+(\d+)", log, flags=re.M).group(1))
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    assert len(submitted) == total - 1, log
    assert "localrule all:" in log
    # ... slurmctld received each as a batch job and slurmd ran it to the end.
    ctld = (slurm_cluster.root / "log" / "slurmctld.log").read_text(errors="replace")
    batch = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)", ctld))
    done = set(re.findall(r"_job_complete: JobId=(\d+) WEXITSTATUS 0", ctld))
    assert set(submitted.values()) == batch == done
    jobs = [ln.split("|") for ln in slurm_cluster.run(
        ["squeue", "--states=all", "-h", "-o", "%i|%T|%k|%l|%m|%C"]).stdout.split()]
    assert {j[0] for j in jobs if j[1] == "COMPLETED"} >= batch
    # The profile's requests reached SLURM: wall time (minutes), memory and CPUs (threads).
    asked = {j[2]: tuple(j[3:]) for j in jobs}  # comment rule_NAME[_wildcards_...] -> request
    assert asked["rule_train_detector"] == ("2-00:00:00", "16000M", str(threads))
    assert asked["rule_split"] == ("30:00", "1000M", "1")
    logs = list((root / ".snakemake" / "slurm_logs").rglob("*.log"))
    assert len(logs) == len(batch)  # one SLURM log per job (--slurm-keep-successful-logs)

    assert digests(root) == digests(local)
