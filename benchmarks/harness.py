"""The performance harness (issue "Population scale"): `python -m benchmarks --rows N`.

See benchmarks/README.md. In short: a synthetic export of about N lab rows (`b12lab synth`, patients = N / 10,
fixed seed) is generated once and cached under benchmarks/.cache/, then each contender runs as a separate
subprocess, one after the other, on the same files:

  floor    benchmarks/floor.py: DuckDB copying the lab CSV files to Parquet, nothing else
  pandas   benchmarks/pandas_baseline.py: the plain pandas script an analyst would write
  run      `b12lab run` end to end on a fresh output folder, against a running Prefect API server
  delta    `b12lab run` again on the same output folder, with one more night's lab exports (+1 % rows)

For each: wall time, lab rows per second, the peak of the summed resident set size of the whole process tree
(psutil, every 50 ms) and the ratio of its wall time to the floor's. The Prefect server is started once
(its start-up time is reported on its own) and stopped at the end. `--profile` runs the full night and the
1 % night with stage timers (benchmarks/profile_run.py) and prints, for each, where the time goes per step
inside the Prefect tasks, besides the time per task (from the Prefect API) printed in any case.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT_ROOT / "benchmarks"
DEFAULT_CACHE_DIR = BENCH_DIR / ".cache"
RESULTS_DIR = BENCH_DIR / "results"
SYNTH_SOURCE = PROJECT_ROOT / "pipelines" / "b12lab" / "synth" / "csv_exports.py"

SEED = 20260601             # the delta export uses SEED + 1
ROWS_PER_PATIENT = 10        # `b12lab synth` writes ~10 lab rows per patient over the base window
DELTA_SHARE = 0.01           # the delta: 1 % of the rows already in the lake
BASE_WINDOW = ("2021-01-01", "2025-12-31")   # collection dates of the full export (synth's default window)
# "recent" delta: results collected after the full export, as the following nights' exports hold them;
# "spread" delta: a second population over the base window (a backfill: dates as old as the lake's).
DELTA_WINDOWS = {"recent": ("2026-01-01", "2026-01-31"), "spread": BASE_WINDOW}
AS_OF = "2026-01-31"         # every `b12lab run` is as of this date, so results do not depend on the day
SAMPLE_SECONDS = 0.05
SERVER_START_TIMEOUT = 180.0
CONTENDERS = ("floor", "pandas", "run", "delta", "idle")
GIB = 1 << 30
MIB = 1 << 20

# The targets at 10M lab rows (checked here at any size; they are only binding at 10M).
TARGETS = {
    "run_vs_floor_max": 10.0,           # end to end within 10x the floor's wall time
    "run_peak_rss_max_bytes": 1.5 * GIB,  # peak memory under 1.5 GiB (and <= +10 % at 30M rows: compare two files)
    "delta_vs_run_max": 0.10,           # the 1 % delta within 10 % of the full run's time
    "idle_vs_run_max": 0.05,            # a night with no new file within 5 % of it
    "pandas_vs_run_time_min": 4.0,      # at least 4x faster than the pandas script
    "pandas_vs_run_memory_min": 3.0,    # and 3x less memory
}


# ---------------------------------------------------------------------------------------------------------
# Synthetic exports, cached
# ---------------------------------------------------------------------------------------------------------
@dataclass
class Export:
    folder: Path               # the drop folder (export files only)
    rows: dict[str, int]       # data rows per file
    generated_seconds: float | None  # None when it came from the cache

    @property
    def lab_files(self) -> list[str]:
        return sorted(name for name in self.rows if is_lab_file(name))

    @property
    def lab_rows(self) -> int:
        return sum(self.rows[name] for name in self.lab_files)


def is_lab_file(name: str) -> bool:
    lower = name.lower()
    return lower.startswith("labs") and (lower.endswith(".csv") or lower.endswith(".csv.gz"))


def synth_hash() -> str:
    return hashlib.sha256(SYNTH_SOURCE.read_bytes()).hexdigest()[:12]


# What a measurement depends on besides the data: the pipeline's code, SQL, reference data, rules and suites.
CODE_GLOBS = ("pipelines/b12lab/**/*.py", "pipelines/b12lab/**/*.sql", "pipelines/b12lab/**/*.csv",
              "pipelines/b12lab/**/*.yaml", "pipelines/b12lab/**/*.yml", "pipelines/b12lab/**/*.json",
              "pipelines/b12lab/**/*.html", "transforms/**/*.sql", "transforms/**/*.yml", "transforms/**/*.csv",
              "pyproject.toml")


def code_fingerprint() -> str:
    """sha256 (12 hex digits) of the pipeline's code as it is on disk now, committed or not. Others may be
    editing it while the harness runs: a result whose contenders saw different code is flagged."""
    digest = hashlib.sha256()
    files = sorted({path for pattern in CODE_GLOBS for path in PROJECT_ROOT.glob(pattern)
                    if path.is_file() and "__pycache__" not in path.parts})
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0")
        try:
            digest.update(path.read_bytes())
        except OSError:  # deleted meanwhile
            pass
    return digest.hexdigest()[:12]


def b12lab_command() -> list[str]:
    script = Path(sys.executable).with_name("b12lab")
    if script.exists():
        return [str(script)]
    found = shutil.which("b12lab")
    return [found] if found else [sys.executable, "-m", "b12lab.cli.main"]


_SYNTH_ROWS = re.compile(r"^\s+(\S+): (\d+) rows$")


def run_synth(patients: int, seed: int, window: tuple[str, str], out: Path) -> tuple[dict[str, int], float]:
    """`b12lab synth` into `out`; returns the data rows per file (from its output) and the seconds it took."""
    started = time.perf_counter()
    result = subprocess.run(
        [*b12lab_command(), "synth", "--patients", str(patients), "--out", str(out), "--seed", str(seed),
         "--start", window[0], "--end", window[1]],
        capture_output=True, text=True, cwd=PROJECT_ROOT, env=quiet_env(),
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"b12lab synth failed ({result.returncode}): {result.stderr.strip()[-2000:]}")
    rows = {m.group(1): int(m.group(2)) for line in result.stdout.splitlines() if (m := _SYNTH_ROWS.match(line))}
    present = sorted(p.name for p in out.iterdir())
    if sorted(rows) != present:
        raise RuntimeError(f"b12lab synth output not understood: files {present}, rows {rows}")
    return rows, seconds


def cached_export(cache_dir: Path, label: str, patients: int, seed: int, log=print,
                  window: tuple[str, str] = BASE_WINDOW) -> Export:
    """The synthetic export for (patients, seed, window, synth.py), generated by `b12lab synth` on first use.

    Layout: CACHE/<label>-p<patients>-s<seed>-<start>-<end>-<sha256(synth.py)[:12]>/{exports/, manifest.json};
    a folder is complete once its manifest exists (it is built under a temporary name and renamed into place).
    """
    key = f"{label}-p{patients}-s{seed}-{window[0]}-{window[1]}-{synth_hash()}"
    folder = cache_dir / key
    manifest = folder / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return Export(folder / "exports", data["rows"], None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f".{key}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    log(f"generating {key} with b12lab synth --patients {patients} --seed {seed} --start {window[0]} "
        f"--end {window[1]} ...")
    try:
        rows, seconds = run_synth(patients, seed, window, partial / "exports")
    except RuntimeError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    (partial / "manifest.json").write_text(json.dumps(
        {"key": key, "patients": patients, "seed": seed, "window": list(window), "synth_sha256_12": synth_hash(),
         "rows": rows, "generated_seconds": round(seconds, 2), "generated_at": now_iso()}, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    log(f"  {sum(v for k, v in rows.items() if is_lab_file(k))} lab rows in {seconds:.1f} s")
    return Export(folder / "exports", rows, seconds)


def delta_export(cache_dir: Path, target_rows: int, seed: int, dates: str, log=print) -> Export:
    """About `target_rows` new lab rows from a second synthetic population (another seed).

    Over the base window, `b12lab synth` writes ~10 lab rows per patient, so patients = rows / 10. Over a
    one-month window it writes far fewer per patient: the ratio is measured once on a small probe export
    (kept in the cache as calibration-*.json) and the patient count scaled to it.
    """
    window = DELTA_WINDOWS[dates]
    if window == BASE_WINDOW:
        return cached_export(cache_dir, "delta", max(1, target_rows // ROWS_PER_PATIENT), seed, log, window)
    calibration = cache_dir / f"calibration-s{seed}-{window[0]}-{window[1]}-{synth_hash()}.json"
    if not calibration.exists():
        probe_patients = 20_000
        with tempfile.TemporaryDirectory(prefix="b12lab-synth-probe-") as probe:
            rows, _ = run_synth(probe_patients, seed, window, Path(probe) / "exports")
        lab_rows = sum(n for name, n in rows.items() if is_lab_file(name))
        cache_dir.mkdir(parents=True, exist_ok=True)
        write_json(calibration, {"patients": probe_patients, "lab_rows": lab_rows, "window": list(window)})
    probe = json.loads(calibration.read_text())
    patients = max(1, round(target_rows * probe["patients"] / max(1, probe["lab_rows"])))
    return cached_export(cache_dir, f"delta-{dates}", patients, seed, log, window)


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def drop_folder(base: Export, target: Path) -> Path:
    """The site's drop folder of the nightly runs: the base export's files, as hard links (the pipeline only
    reads). The nights after the first add their files to it, as a site's export job does, so a night finds
    the files it already ingested where they were (their digests remembered, docs/incremental.md)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for path in sorted(base.folder.iterdir()):
        link_or_copy(path, target / path.name)
    return target


def add_delta(delta: Export, folder: Path) -> dict[str, int]:
    """The delta's lab files added to the drop folder, renamed labs_delta_<site>...; returns their rows."""
    added = {}
    for name in delta.lab_files:
        new_name = "labs_delta_" + name[len("labs_"):] if name.startswith("labs_") else "labs_delta_" + name
        link_or_copy(delta.folder / name, folder / new_name)
        added[new_name] = delta.rows[name]
    return added


def warm_page_cache(folders: list[Path]) -> None:
    """Read every input file once so that no contender pays for the first read from disk."""
    for folder in folders:
        for path in sorted(folder.iterdir()):
            with path.open("rb") as stream:
                while stream.read(16 << 20):
                    pass


# ---------------------------------------------------------------------------------------------------------
# Measuring one subprocess
# ---------------------------------------------------------------------------------------------------------
def tree_rss(root: psutil.Process) -> int:
    """The summed resident set size of a process and all its descendants (0 once it has gone)."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total


def is_dask_worker(process: psutil.Process) -> bool:
    """A worker of the local Dask cluster that `b12lab run --workers N` starts: its nannies start each worker
    with multiprocessing's spawn, so the worker's command line is multiprocessing's `spawn_main`."""
    try:
        return any("spawn_main" in part for part in process.cmdline())
    except psutil.Error:
        return False


def worker_rss(root: psutil.Process, known: dict[int, bool]) -> dict[int, int]:
    """The resident set size of each Dask worker process under `root` (with its own descendants), by pid;
    `known` caches which pids are workers. Only a worker is cached: a process sampled between its fork and its
    exec still shows its parent's command line, and is read again until it shows its own."""
    try:
        processes = root.children(recursive=True)
    except psutil.Error:
        return {}
    workers = []
    for process in processes:
        if not known.get(process.pid):
            known[process.pid] = is_dask_worker(process)
        if known[process.pid]:
            workers.append(process)
    pids = {process.pid for process in workers}
    found = {}
    for process in workers:
        try:
            nested = any(parent.pid in pids for parent in process.parents())
        except psutil.Error:
            continue
        if not nested:  # a process a worker spawned is measured with it (tree_rss), not as a worker of its own
            found[process.pid] = tree_rss(process)
    return found


def _busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent not idle since boot (all CPUs)."""
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


class Sampler(threading.Thread):
    """Samples the summed RSS of one or more process trees every `interval` seconds; keeps the peak."""

    def __init__(self, pid: int, interval: float = SAMPLE_SECONDS, min_available: int = 0):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.interval = interval
        self.min_available = min_available
        self.peak = 0
        self.samples = 0
        self.killed_low_memory = False
        self.timeline: dict[int, int] = {}  # whole second since the start (epoch) -> peak RSS in that second
        self.worker_peaks: dict[int, int] = {}  # Dask worker pid -> its peak RSS (runs with --workers)
        self._workers: dict[int, bool] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            rss = tree_rss(self.root)
            self.peak = max(self.peak, rss)
            for pid, worker in worker_rss(self.root, self._workers).items():
                self.worker_peaks[pid] = max(self.worker_peaks.get(pid, 0), worker)
            second = int(time.time())
            self.timeline[second] = max(self.timeline.get(second, 0), rss)
            self.samples += 1
            if self.min_available and psutil.virtual_memory().available < self.min_available:
                # Better a failed measurement than the kernel's OOM killer choosing someone else's process.
                self.killed_low_memory = True
                try:
                    os.killpg(self.root.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


MIN_AVAILABLE_MEMORY = 1 * GIB


def measure(name: str, command: list[str], env: dict, log_file: Path, *, timeout: float | None = None,
            min_available: int = MIN_AVAILABLE_MEMORY) -> dict:
    """Run one contender to its end; wall time, CPU time and the peak RSS of its process tree."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("wb") as log:
        code = code_fingerprint()
        cpu_before = _busy_cpu_seconds()
        load_before = os.getloadavg()[0]
        started_epoch = time.time()
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT,
                                   start_new_session=True)
        sampler = Sampler(process.pid, min_available=min_available)
        sampler.start()
        deadline = None if timeout is None else started + timeout
        try:
            while True:
                # wait4 gives the child's own rusage (it and the descendants it waited for): CPU time and the
                # largest single RSS, a lower bound that a too-short-lived process could slip past the sampler.
                pid, status, usage = os.wait4(process.pid, os.WNOHANG if deadline else 0)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    os.killpg(process.pid, signal.SIGKILL)
                    pid, status, usage = os.wait4(process.pid, 0)
                    break
                time.sleep(0.01)
        except BaseException:
            # The harness itself is stopped: take its contender (its own process group) down with it.
            sampler.stop()
            try:
                os.killpg(process.pid, signal.SIGKILL)
                os.waitpid(process.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            raise
        wall = time.perf_counter() - started
        ended_epoch = time.time()
        busy = _busy_cpu_seconds() - cpu_before
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    max_single = usage.ru_maxrss * 1024
    result = {
        "command": [str(c) for c in command],
        "exit_code": process.returncode,
        "wall_s": round(wall, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_bytes": max(sampler.peak, max_single),
        "max_single_process_rss_bytes": max_single,
        # CPU time the rest of the machine used meanwhile (the harness's sampler included): a measurement
        # taken while something else was busy (a test suite, a build) is not comparable.
        "other_cpu_s": round(max(0.0, busy - (usage.ru_utime + usage.ru_stime)), 2),
        "load_average_before": round(load_before, 2),
        "code_sha256_12": code,
        "rss_samples": sampler.samples,
        # Runs with --workers: each Dask worker process's own peak (largest first); the whole tree's is above.
        "worker_peak_rss_bytes": sorted(sampler.worker_peaks.values(), reverse=True),
        # [epoch second, peak RSS in it]: the harness attributes the peak to the Prefect task running then.
        "rss_timeline": sorted(sampler.timeline.items()),
        "started_epoch": started_epoch,
        "ended_epoch": ended_epoch,
        "log": str(log_file),
    }
    if sampler.killed_low_memory:
        result["killed"] = f"the machine had less than {min_available / GIB:.1f} GiB available"
    elif deadline is not None and wall > timeout:
        result["killed"] = f"timeout after {timeout:.0f} s"
    if process.returncode != 0:
        result["log_tail"] = log_file.read_text(errors="replace")[-3000:]
    return result


# ---------------------------------------------------------------------------------------------------------
# The Prefect API server
# ---------------------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quiet_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1", GX_ANALYTICS_ENABLED="false")
    env.update(extra)
    return env


class PrefectServer:
    """`prefect server start` in the background, as under `b12lab serve`, with a private PREFECT_HOME."""

    def __init__(self, home: Path, log_file: Path, api_url: str | None = None):
        """`api_url`: an API server already running (`--prefect-api`), used as it is: never started or stopped
        here, its start-up and memory not measured."""
        self.home = home
        self.log_file = log_file
        self.existing = api_url is not None
        self.port = None if self.existing else free_port()
        self.api_url = api_url.rstrip("/") if self.existing else f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def env(self) -> dict:
        return quiet_env(PREFECT_HOME=str(self.home), PREFECT_API_URL=self.api_url)

    def start(self) -> float:
        """Start with an empty PREFECT_HOME (the first start creates its database) and wait until healthy; an
        existing server is only checked (start-up 0)."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        if self.existing:
            if not self.healthy(timeout=10):
                raise RuntimeError(f"the Prefect API {self.api_url} does not answer its health check")
            self.startup_s = 0.0
            return self.startup_s
        env = self.env()
        env.pop("PREFECT_API_URL")
        prefect = Path(sys.executable).with_name("prefect")
        command = [str(prefect) if prefect.exists() else "prefect", "server", "start",
                   "--host", "127.0.0.1", "--port", str(self.port)]
        started = time.perf_counter()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("wb")
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                        cwd=self.home, start_new_session=True)
        while time.perf_counter() - started < SERVER_START_TIMEOUT:
            if self.process.poll() is not None:
                raise RuntimeError(f"prefect server exited ({self.process.returncode}); see {self.log_file}")
            if self.healthy(timeout=2):
                self.startup_s = time.perf_counter() - started
                return self.startup_s
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prefect server not healthy after {SERVER_START_TIMEOUT:.0f} s; see {self.log_file}")

    def healthy(self, timeout: float) -> bool:
        """Whether the API answers its health check (HTTP 200) within `timeout` seconds."""
        try:
            with urllib.request.urlopen(f"{self.api_url}/health", timeout=timeout) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def rss(self) -> int:
        return tree_rss(psutil.Process(self.process.pid)) if self.process and self.process.poll() is None else 0

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it was started in a new session), SIGKILL if it hangs."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
            except ProcessLookupError:
                pass
        self._log.close()
        self.process = None

    def get(self, path: str) -> list | dict:
        return self._request("GET", path)

    def post(self, path: str, body: dict) -> list | dict:
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: dict | None = None) -> list | dict | None:
        """One API call, retried as Prefect's own client retries it: a busy server (its database locked while
        both cores are loaded) answers 429 or 503 for a moment."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(6):
            request = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    content = response.read()
                    return json.loads(content) if content else None  # a DELETE answers 204, no body
            except urllib.error.HTTPError as error:
                if error.code not in (429, 502, 503) or attempt == 5:
                    raise
            time.sleep(0.5 * 2 ** attempt)


def parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


_INGEST_LOG = re.compile(r"^(\S+): read \d+, accepted")


def prefect_stages(server: PrefectServer, output_dir: Path, process: dict, wait_s: float = 30.0) -> dict | None:
    """The flow run of `b12lab run --output output_dir` and its task runs, as recorded by the Prefect API.

    Task runs reach the API as events, recorded a moment after the client sent them: poll until every task
    run has ended and their number is stable. Returns None if no such flow run is found.
    """
    deadline = time.monotonic() + wait_s
    flow_run, tasks, previous = None, [], -1
    while time.monotonic() < deadline:
        runs = server.post("/flow_runs/filter", {"sort": "START_TIME_DESC", "limit": 5})
        matching = [r for r in runs if str(Path((r.get("parameters") or {}).get("output_dir") or "")) ==
                    str(output_dir) and (parse_time(r.get("start_time")) or 0) >= process["started_epoch"] - 1]
        if matching:
            flow_run = matching[0]
            tasks = server.post("/task_runs/filter", {"flow_runs": {"id": {"any_": [flow_run["id"]]}},
                                                      "sort": "EXPECTED_START_TIME_ASC"})
            settled = flow_run.get("end_time") and all(t.get("end_time") for t in tasks)
            if settled and len(tasks) == previous:
                break
            previous = len(tasks)
        time.sleep(1.0)
    if flow_run is None:
        return None
    files = {}
    try:
        logs = server.post("/logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run["id"]]}}, "limit": 200})
        for entry in logs:
            if entry.get("task_run_id") and (match := _INGEST_LOG.match(entry.get("message", ""))):
                files.setdefault(entry["task_run_id"], []).append(match.group(1))
    except urllib.error.URLError:
        pass
    flow_start, flow_end = parse_time(flow_run.get("start_time")), parse_time(flow_run.get("end_time"))
    timeline = process.get("rss_timeline") or []

    def peak_between(start: float | None, end: float | None) -> int | None:
        if start is None or end is None:
            return None
        inside = [rss for second, rss in timeline if int(start) <= second <= int(end)]
        return max(inside) if inside else None

    task_rows = []
    for task in tasks:
        start, end = parse_time(task.get("start_time")), parse_time(task.get("end_time"))
        seconds = task.get("total_run_time") or ((end - start) if start and end else 0.0)
        base = task["name"].rsplit("-", 1)[0]
        names = files.get(task["id"], [])  # a task of small files ingests several
        label = f"{base} {names[0]}" + (f" and {len(names) - 1} more" if len(names) > 1 else "") if names else base
        task_rows.append({"task": label, "name": task["name"], "seconds": round(seconds, 3),
                          "state": task.get("state_type"), "peak_rss_bytes": peak_between(start, end)})
    in_tasks = sum(t["seconds"] for t in task_rows)
    flow_seconds = (flow_end - flow_start) if flow_start and flow_end else None
    stages = [{"stage": "start-up: Python, imports, flow run creation",
               "seconds": round(flow_start - process["started_epoch"], 3) if flow_start else None,
               "peak_rss_bytes": peak_between(process["started_epoch"], flow_start)}]
    stages += [{"stage": f"task {t['task']}", "seconds": t["seconds"], "peak_rss_bytes": t["peak_rss_bytes"]}
               for t in task_rows]
    if flow_seconds is not None:
        stages.append({"stage": "flow code between tasks", "seconds": round(flow_seconds - in_tasks, 3)})
        stages.append({"stage": "shut-down: flow run end to process exit",
                       "seconds": round(process["ended_epoch"] - flow_end, 3),
                       "peak_rss_bytes": peak_between(flow_end, process["ended_epoch"])})
    for stage in stages:
        if stage["seconds"] is not None:
            stage["share_of_wall"] = round(stage["seconds"] / process["wall_s"], 4)
    return {"flow_run_id": flow_run["id"], "flow_run_state": flow_run.get("state_type"),
            "failed_tasks": [t["task"] for t in task_rows if t["state"] not in ("COMPLETED", None)],
            "flow_run_seconds": round(flow_seconds, 3) if flow_seconds is not None else None,
            "tasks": task_rows, "stages": stages}


# ---------------------------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def machine() -> dict:
    import duckdb
    import pandas

    return {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "memory_bytes": psutil.virtual_memory().total, "duckdb": duckdb.__version__,
            "pandas": pandas.__version__, "prefect": _version("prefect"),
            "great_expectations": _version("great_expectations"), "git_commit": _git_commit()}


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    try:  # read-only
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=PROJECT_ROOT,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def format_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    def line(cells):
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int] | None = None) -> str:
    right = right if right is not None else set(range(1, len(headers)))
    align = ["---:" if i in right else ":---" for i in range(len(headers))]
    return "\n".join("| " + " | ".join(str(c) for c in r) + " |" for r in [headers, align, *rows])


CONTENDER_TITLES = {
    "floor": "floor (DuckDB CSV -> Parquet)",
    "pandas": "pandas script",
    "run": "b12lab run (full)",
    "delta": "b12lab run (+1% delta)",
    "idle": "b12lab run (no new file)",
}


def results_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    headers = ["contender", "lab rows", "wall s", "rows/s", "peak RSS MiB", "x floor", "CPU s", "others' CPU s"]
    rows = []
    for name, item in result["contenders"].items():
        if item.get("exit_code") != 0:
            rows.append([CONTENDER_TITLES.get(name, name), f"{item.get('lab_rows', 0):,}", "FAILED", "", "", "", "",
                         ""])
            continue
        ratio = item.get("ratio_to_floor")
        rows.append([CONTENDER_TITLES.get(name, name), f"{item['lab_rows']:,}", f"{item['wall_s']:.2f}",
                     f"{item['rows_per_s']:,.0f}", f"{item['peak_rss_bytes'] / MIB:,.0f}",
                     "" if ratio is None else f"{ratio:.2f}", f"{item['cpu_s']:.1f}",
                     f"{item.get('other_cpu_s', 0):.1f}"])
    return headers, rows


def target_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    rows = []
    for check in result.get("targets", []):
        verdict = "n/a" if check["passed"] is None else ("pass" if check["passed"] else "FAIL")
        rows.append([check["target"], check["measured"], verdict])
    return ["target (issue, at 10M rows)", "measured", ""], rows


def stage_rows(stages: list[dict]) -> tuple[list[str], list[list[str]]]:
    rows = [[s["stage"], "" if s["seconds"] is None else f"{s['seconds']:.2f}",
             "" if s.get("share_of_wall") is None else f"{100 * s['share_of_wall']:.1f}%",
             "" if s.get("peak_rss_bytes") is None else f"{s['peak_rss_bytes'] / MIB:,.0f}"] for s in stages]
    return ["stage", "s", "of wall", "peak RSS MiB (1 s resolution)"], rows


def evaluate_targets(contenders: dict) -> list[dict]:
    def ok(name):
        return name in contenders and contenders[name].get("exit_code") == 0

    checks = []
    run, floor, pandas, delta = (contenders.get(n) for n in ("run", "floor", "pandas", "delta"))
    if ok("run") and ok("floor"):
        ratio = run["wall_s"] / floor["wall_s"]
        checks.append({"target": f"run wall <= {TARGETS['run_vs_floor_max']}x floor", "value": round(ratio, 3),
                       "measured": f"{ratio:.2f}x", "passed": ratio <= TARGETS["run_vs_floor_max"]})
    if ok("run"):
        peak = run["peak_rss_bytes"]
        checks.append({"target": f"run peak RSS < {TARGETS['run_peak_rss_max_bytes'] / GIB:g} GiB", "value": peak, "measured": f"{peak / MIB:,.0f} MiB",
                       "passed": peak < TARGETS["run_peak_rss_max_bytes"]})
    if ok("run") and ok("delta"):
        ratio = delta["wall_s"] / run["wall_s"]
        checks.append({"target": f"delta wall <= {TARGETS['delta_vs_run_max']:.0%} of run", "value": round(ratio, 3),
                       "measured": f"{ratio:.1%}", "passed": ratio <= TARGETS["delta_vs_run_max"]})
    if ok("run") and ok("idle"):
        ratio = contenders["idle"]["wall_s"] / run["wall_s"]
        checks.append({"target": f"no-new-file night <= {TARGETS['idle_vs_run_max']:.0%} of run",
                       "value": round(ratio, 3), "measured": f"{ratio:.1%}",
                       "passed": ratio <= TARGETS["idle_vs_run_max"]})
    if ok("run") and ok("pandas"):
        speed = pandas["wall_s"] / run["wall_s"]
        memory = pandas["peak_rss_bytes"] / run["peak_rss_bytes"]
        checks.append({"target": f"run >= {TARGETS['pandas_vs_run_time_min']:.0f}x faster than pandas",
                       "value": round(speed, 3), "measured": f"{speed:.2f}x",
                       "passed": speed >= TARGETS["pandas_vs_run_time_min"]})
        checks.append({"target": f"run >= {TARGETS['pandas_vs_run_memory_min']:.0f}x less memory than pandas",
                       "value": round(memory, 3), "measured": f"{memory:.2f}x",
                       "passed": memory >= TARGETS["pandas_vs_run_memory_min"]})
    return checks


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------------------
# The stage tree of a profiled run
# ---------------------------------------------------------------------------------------------------------
def stage_tree(events: list[dict]) -> list[dict]:
    """Timer events (path, seconds) as a flat, ordered tree: total, calls and depth per path, with an
    "(other)" row per node for its time not covered by its children."""
    totals: dict[tuple, float] = {}
    calls: dict[tuple, int] = {}
    for event in events:
        path = tuple(event["path"])
        if path not in totals:
            totals[path] = 0.0
            calls[path] = 0
        totals[path] += event["seconds"]
        calls[path] += 1
    # Events are recorded when a timer ends; siblings are listed in the order in which they first ended.
    first_seen = {}
    for index, event in enumerate(events):
        first_seen.setdefault(tuple(event["path"]), index)
    children: dict[tuple, list[tuple]] = {}
    for path in totals:
        children.setdefault(path[:-1], []).append(path)
    for siblings in children.values():
        siblings.sort(key=lambda p: first_seen[p])
    rows = []

    def visit(path: tuple) -> None:
        kids = children.get(path, [])
        rows.append({"path": list(path), "stage": path[-1], "depth": len(path) - 1,
                     "seconds": round(totals[path], 3), "calls": calls[path]})
        for kid in kids:
            visit(kid)
        if kids:
            other = totals[path] - sum(totals[k] for k in kids)
            if other > 0.0005:
                rows.append({"path": [*path, "(other)"], "stage": "(other)", "depth": len(path),
                             "seconds": round(other, 3), "calls": None})

    for root in children.get((), []):
        visit(root)
    return rows


def tree_table(rows: list[dict], wall: float, min_share: float = 0.002,
               indent: str = "  ") -> tuple[list[str], list[list[str]]]:
    table = []
    for row in rows:
        if row["seconds"] < min_share * wall and row["depth"] > 0:
            continue
        calls = "" if not row["calls"] or row["calls"] == 1 else f" (x{row['calls']})"
        table.append([indent * row["depth"] + row["stage"] + calls, f"{row['seconds']:.2f}",
                      f"{100 * row['seconds'] / wall:.1f}%"])
    return ["step", "s", "of wall"], table


# ---------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="lab rows to generate (default 1,000,000)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default benchmarks/results/latest-<rows>.json)")
    parser.add_argument("--skip", nargs="*", default=[], choices=CONTENDERS, metavar="CONTENDER",
                        help=f"contenders not to run: {', '.join(CONTENDERS)} (delta needs run)")
    parser.add_argument("--profile", action="store_true",
                        help="time the steps inside the full and the 1 %% night (stage timers) and print them")
    parser.add_argument("--seed", type=int, default=SEED, help=f"synth seed (default {SEED})")
    parser.add_argument("--delta-dates", choices=sorted(DELTA_WINDOWS), default="recent",
                        help="recent (default): the new rows were collected in the month after the full export; "
                             "spread: over the same years as the full export (a backfill)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help="where generated exports are kept between runs (default benchmarks/.cache)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="scratch folder for outputs and logs (default: a new temporary folder, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure every contender this many times and keep the fastest (default 1)")
    parser.add_argument("--timeout", type=float, default=None, help="kill a contender after this many seconds")
    parser.add_argument("--report", type=Path, default=None, metavar="FILE",
                        help="print the tables of a results file as Markdown (for the README) and exit")
    parser.add_argument("--prefect-api", default=None, metavar="URL",
                        help="run the nights against this Prefect API (a server already running, e.g. a site's) "
                             "instead of starting one; its start-up and memory are then not measured")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="b12lab run (and the delta) with --workers N: ingest and validation on a local Dask "
                             "cluster of N worker processes; reports each worker's peak memory")
    parser.add_argument("--buckets", type=int, default=None, metavar="B",
                        help="b12lab run (and the delta) with --buckets B: the patient-level models built in B "
                             "buckets (on the workers with --workers); results default to latest-<rows>[-workers<W>]"
                             "-buckets<B>.json")
    args = parser.parse_args(argv)
    if args.buckets is not None and args.buckets < 1:
        parser.error("--buckets must be at least 1")
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.workers is not None and args.profile:
        parser.error("--profile times the functions of one process: it cannot follow tasks onto Dask workers")
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.rows < ROWS_PER_PATIENT:
        parser.error(f"--rows must be at least {ROWS_PER_PATIENT}")
    return args


def _terminate(signum, frame):
    # SIGTERM (or SIGHUP) ends the harness like Ctrl-C: the Prefect server is stopped, the contender killed
    # and what was measured so far is kept in the results file (marked incomplete).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough: let the clean-up finish
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        report(args.report)
        return 0
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="b12lab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return compare(args, work)
    finally:
        if not args.keep and args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep or args.work_dir is not None:
            print(f"scratch folder kept: {work}")


def _log(message: str) -> None:
    print(message, flush=True)


def compare(args: argparse.Namespace, work: Path) -> int:
    skip = set(args.skip)
    if "run" in skip:
        skip.add("delta")
    patients = max(1, args.rows // ROWS_PER_PATIENT)
    base = cached_export(args.cache_dir, "labs", patients, args.seed, _log)
    delta = None
    if "delta" not in skip:
        delta = delta_export(args.cache_dir, max(1, round(base.lab_rows * DELTA_SHARE)), args.seed + 1,
                             args.delta_dates, _log)
    folders = [base.folder] + ([delta.folder] if delta else [])
    warm_page_cache(folders)
    _log(f"input: {base.lab_rows:,} lab rows in {len(base.lab_files)} files ({base.folder})")

    attempts: dict[str, list[dict]] = {}
    result = {
        "harness": "benchmarks/harness.py", "created_at": now_iso(), "rows_requested": args.rows,
        "seed": args.seed, "patients": patients, "synth_sha256_12": synth_hash(),
        "input": {"folder": str(base.folder), "lab_rows": base.lab_rows, "files": base.rows,
                  "cached": base.generated_seconds is None, "synth_seconds": base.generated_seconds},
        "machine": machine(), "sample_interval_s": SAMPLE_SECONDS, "repeat": args.repeat,
        "as_of": AS_OF, "base_window": list(BASE_WINDOW),
        "delta": None if delta is None else {"dates": args.delta_dates, "window": list(DELTA_WINDOWS[args.delta_dates]),
                                             "folder": str(delta.folder), "lab_rows": delta.lab_rows},
    }

    name = f"latest-{args.rows}" + (f"-workers{args.workers}" if args.workers is not None else "") \
        + (f"-buckets{args.buckets}" if args.buckets is not None else "")
    out = args.out or RESULTS_DIR / f"{name}.json"
    result["workers"] = args.workers
    result["buckets"] = args.buckets
    cluster = ([] if args.workers is None else ["--workers", str(args.workers)]) \
        + ([] if args.buckets is None else ["--buckets", str(args.buckets)])

    def record(name: str, measured: dict, lab_rows: int, attempt: int) -> dict:
        measured["lab_rows"] = lab_rows
        measured["rows_per_s"] = round(lab_rows / measured["wall_s"], 1) if measured["wall_s"] > 0 else None
        attempts.setdefault(name, []).append(measured)
        summarise(result, attempts, complete=False)
        write_json(out, result)  # what was measured so far survives an interrupted harness
        per_worker = measured.get("worker_peak_rss_bytes")
        if per_worker:
            _log(f"  {name}: {len(per_worker)} Dask workers, peak RSS per worker "
                 f"{', '.join(f'{peak / MIB:,.0f}' for peak in per_worker)} MiB")
        status = "ok" if measured["exit_code"] == 0 else f"FAILED (exit {measured['exit_code']}, {measured.get('killed') or measured['log']})"
        _log(f"  {name}{f' #{attempt + 1}' if args.repeat > 1 else ''}: {measured['wall_s']:.2f} s, "
             f"peak {measured['peak_rss_bytes'] / MIB:,.0f} MiB, other processes {measured['other_cpu_s']:.1f} "
             f"CPU s  {status}")
        return measured

    def night(name: str, folder: Path, attempt: int) -> dict:
        """One `b12lab run` night into the output folder, measured; with --profile under the stage timers,
        whose tree is kept with it."""
        timings = work / "logs" / f"{name}-{attempt + 1}-stage-timings.json"
        command = ([sys.executable, "-m", "benchmarks.profile_run", str(timings)] if args.profile
                   else b12lab_command())
        measured = measure(name, [*command, "run", "--input", str(folder), "--output", str(output), "--as-of",
                                  AS_OF, *cluster], server.env(), work / "logs" / f"{name}-{attempt + 1}.log",
                           timeout=args.timeout)
        if args.profile:
            measured.update(profile_steps(timings))
        return measured

    env = quiet_env()
    output = work / "out"
    scripts = {"floor": BENCH_DIR / "floor.py", "pandas": BENCH_DIR / "pandas_baseline.py"}
    for attempt in range(args.repeat):
        for name, script in scripts.items():
            if name in skip:
                continue
            _log(f"{name} ...")
            target = work / name
            measured = measure(name, [sys.executable, str(script), "--input", str(base.folder), "--output",
                                      str(target)], env, work / "logs" / f"{name}-{attempt + 1}.log",
                               timeout=args.timeout)
            measured.pop("rss_timeline", None)
            record(name, measured, base.lab_rows, attempt)
            shutil.rmtree(target, ignore_errors=True)

    if "run" not in skip:
        server = PrefectServer(work / "prefect-home", work / "logs" / "prefect-server.log", args.prefect_api)
        _log("prefect server start ..." if not server.existing else f"Prefect API {server.api_url} ...")
        try:
            startup = server.start()
            _log(f"  Prefect API server healthy after {startup:.1f} s" if not server.existing
                 else "  healthy (a server already running: its start-up is not measured)")
            result["prefect_server"] = {"startup_s": round(startup, 3), "api_url": server.api_url,
                                        "started_here": not server.existing}
            for attempt in range(args.repeat):
                shutil.rmtree(output, ignore_errors=True)
                _log("b12lab run (full) ...")
                folder = drop_folder(base, work / "drop")
                run = record("run", night("run", folder, attempt), base.lab_rows, attempt)
                run["prefect"] = prefect_stages(server, output, run)
                run.pop("rss_timeline", None)
                run["prefect_server_rss_after_bytes"] = server.rss()
                if delta is None or run["exit_code"] != 0:
                    continue
                added = add_delta(delta, folder)
                _log(f"b12lab run (+{sum(added.values()):,} lab rows in {', '.join(sorted(added))}) ...")
                measured = record("delta", night("delta", folder, attempt), sum(added.values()), attempt)
                measured["input_lab_rows"] = base.lab_rows + sum(added.values())
                measured["delta_files"] = added
                measured["prefect"] = prefect_stages(server, output, measured)
                measured.pop("rss_timeline", None)
                if "idle" in skip or measured["exit_code"] != 0:
                    continue
                _log("b12lab run (the same folder again: no new file) ...")
                idle = record("idle", night("idle", folder, attempt), 0, attempt)
                idle["input_lab_rows"] = measured["input_lab_rows"]
                idle["prefect"] = prefect_stages(server, output, idle)
                idle.pop("rss_timeline", None)
        finally:
            server.stop()

    summarise(result, attempts, complete=True)
    write_json(out, result)
    print_comparison(result)
    _log(f"results: {out}")
    return 0 if all(item["exit_code"] == 0 for item in result["contenders"].values()) else 1


def summarise(result: dict, attempts: dict[str, list[dict]], complete: bool) -> None:
    """The contenders' figures, ratios, targets and code fingerprints from the attempts so far."""
    # With --repeat, each contender is represented by its fastest successful attempt (the one least disturbed
    # by whatever else ran on the machine); every attempt's wall time stays in the file.
    contenders: dict[str, dict] = {}
    for name in CONTENDERS:
        if name not in attempts:
            continue
        passed = [a for a in attempts[name] if a["exit_code"] == 0]
        chosen = dict(min(passed, key=lambda a: a["wall_s"]) if passed else attempts[name][-1])
        chosen["attempt_wall_s"] = [a["wall_s"] for a in attempts[name]]
        chosen["attempt_peak_rss_bytes"] = [a["peak_rss_bytes"] for a in attempts[name]]
        contenders[name] = chosen
    floor = contenders.get("floor")
    for item in contenders.values():
        if floor and floor.get("exit_code") == 0 and item.get("exit_code") == 0:
            item["ratio_to_floor"] = round(item["wall_s"] / floor["wall_s"], 3)
        else:
            item["ratio_to_floor"] = None
    result["contenders"] = contenders
    result["targets"] = evaluate_targets(contenders)
    versions = sorted({a["code_sha256_12"] for runs in attempts.values() for a in runs
                       if a.get("code_sha256_12")} | {code_fingerprint()})
    result["code_sha256_12"] = versions[0] if len(versions) == 1 else versions
    result["code_changed_during_run"] = len(versions) > 1
    result["complete"] = complete


def print_comparison(result: dict, markdown: bool = False) -> None:
    table = markdown_table if markdown else format_table
    print()
    print(f"{result['input']['lab_rows']:,} lab rows ({result['patients']:,} patients, seed {result['seed']}), "
          f"{result['machine']['cpus']} CPUs, runs as of {result.get('as_of', 'today')}")
    if result.get("delta"):
        delta = result["delta"]
        print(f"delta: {delta['lab_rows']:,} new lab rows collected {delta['window'][0]} to {delta['window'][1]} "
              f"({delta['dates']})")
    print(table(*results_rows(result)))
    for name, item in result["contenders"].items():
        if item.get("worker_peak_rss_bytes"):
            peaks = ", ".join(f"{peak / MIB:,.0f}" for peak in item["worker_peak_rss_bytes"])
            print(f"{CONTENDER_TITLES.get(name, name)} on {len(item['worker_peak_rss_bytes'])} Dask workers "
                  f"(--workers {result.get('workers')}): peak RSS per worker {peaks} MiB (in the whole tree's peak)")
    server = result.get("prefect_server")
    if server and server.get("started_here", True):  # results written before the option have no started_here
        print(f"Prefect API server start-up (not included above): {server['startup_s']:.1f} s")
    if result.get("complete") is False:
        print("INCOMPLETE: the harness was interrupted; the contenders above are those measured before")
    for name, item in result["contenders"].items():
        failed = ((item.get("prefect") or {}).get("failed_tasks")) or []
        if failed:
            print(f"WARNING: {name}: Prefect task(s) {', '.join(failed)} did not complete (the run still exited "
                  f"{item['exit_code']}): its time is not that of a whole run")
    if result.get("code_changed_during_run"):
        print(f"WARNING: the pipeline code changed while the harness ran ({', '.join(result['code_sha256_12'])}): "
              "the contenders did not all run the same code; measure again")
    if result.get("targets"):
        print()
        print(table(*target_rows(result), right=set()))
    for name in ("run", "delta"):
        prefect = (result["contenders"].get(name) or {}).get("prefect")
        if prefect:
            print()
            print(f"{CONTENDER_TITLES[name]}: time per stage (Prefect API)")
            print(table(*stage_rows(prefect["stages"]), right={1, 2, 3}))
        if (result["contenders"].get(name) or {}).get("steps"):
            print_steps(CONTENDER_TITLES[name], result["contenders"][name], markdown)


def profile_steps(timings_file: Path) -> dict:
    """The stage timers' tree of one profiled night (benchmarks/profile_run.py wrote timings_file)."""
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {"events": [], "marks": {}}
    tree = stage_tree(timings["events"])
    flow_total = sum(r["seconds"] for r in tree if r["depth"] == 0 and r["stage"].startswith("flow"))
    return {"steps": tree, "marks": timings.get("marks", {}), "flow_function_s": round(flow_total, 3),
            "not_timed": timings.get("missing", [])}


def print_steps(title: str, contender: dict, markdown: bool = False) -> None:
    """A profiled night's steps inside the flow, as an indented tree with the share of its wall time."""
    table = markdown_table if markdown else format_table
    print()
    print(f"{title}: steps inside the flow (timers of benchmarks/profile_run.py; steps under 0.2% of wall hidden)")
    indent = "\u2003\u2003" if markdown else "  "  # em spaces: Markdown keeps them in a table cell
    print(table(*tree_table(contender["steps"], contender["wall_s"], indent=indent), right={1, 2}))
    if contender.get("not_timed"):
        print(f"not timed (not found in the pipeline code): {', '.join(contender['not_timed'])}")


def report(path: Path) -> None:
    """Markdown tables of a results file, for benchmarks/README.md."""
    print_comparison(json.loads(path.read_text()), markdown=True)
