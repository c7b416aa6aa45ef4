"""CPU seconds and peak memory of process groups, read from /proc (Linux only).

A :class:`CpuMeter` samples every ``interval`` seconds (0.25), in a thread, the CPU time
(utime + stime) of two groups of processes during a measurement window:

- the *pool*: a root process and its descendants (a benchmark's pusher and its
  worker processes); a direct child that exits during the window is counted
  exactly through the root's cutime/cstime once it is reaped, another
  process that exits counts up to its last sample;
- *PostgreSQL*: the client backends connected to one database (the run's
  fresh database) plus the server's shared background processes (checkpointer,
  walwriter, io workers, autovacuum, ...), found as the postmaster's children
  by their process titles. Backends of other databases are not counted.

When the pool's root is the measuring process itself, the meter's own CPU
(about 4 ms a sample) is taken out. Everything here is best effort: where /proc
or the server's processes cannot be read (another host, a container), the
figures are ``None``.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PROC = Path("/proc")
# "postgres: <user> <database> <host> <activity>", host "[local]" or "addr(port)"
_CLIENT_TITLE = re.compile(r"^postgres: \S+ (\S+) (\[local\]|\S+\(\d+\))")


@dataclass(frozen=True)
class Stat:
    ppid: int
    cpu: float  # utime + stime, seconds
    children_cpu: float  # cutime + cstime of reaped children, seconds


def read_stat(pid: int) -> Stat | None:
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state; ppid is field 4 of stat(5), utime..cstime 14..17
    return Stat(
        ppid=int(fields[1]),
        cpu=(int(fields[11]) + int(fields[12])) / _TICKS,
        children_cpu=(int(fields[13]) + int(fields[14])) / _TICKS,
    )


def parents() -> dict[int, int]:
    """Every visible process's parent: {pid: ppid}."""
    found = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat.ppid
    return found


def descendants(root: int, table: dict[int, int], exclude: Iterable[int] = ()) -> set[int]:
    """``root`` and the processes below it, without the subtrees of ``exclude``."""
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    skip = set(exclude)
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in found or pid in skip:
            continue
        found.add(pid)
        todo.extend(children.get(pid, ()))
    return found


def title(pid: int) -> str:
    try:
        raw = (_PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()


def postgres_processes(postmaster: int, database: str, table: dict[int, int]) -> set[int]:
    """The postmaster, its background processes and the client backends of ``database``."""
    found = {postmaster}
    for pid, ppid in table.items():
        if ppid != postmaster:
            continue
        client = _CLIENT_TITLE.match(title(pid))
        if client is None or client.group(1) == database:
            found.add(pid)
    return found


def postmaster_of(backend_pid: int) -> int | None:
    """The postmaster of a backend (``SELECT pg_backend_pid()``), if this machine sees it."""
    stat = read_stat(backend_pid)
    if stat is None or not title(backend_pid).startswith("postgres"):
        return None
    return stat.ppid


def peak_rss_mib(pids: Iterable[int]) -> float | None:
    """Sum of the processes' peak resident set sizes (VmHWM), MiB."""
    total, seen = 0, False
    for pid in pids:
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1])
                seen = True
    return total / 1024 if seen else None


@dataclass
class _Group:
    """CPU of a changing set of processes over a window."""

    baseline: dict[int, float] = field(default_factory=dict)
    last: dict[int, float] = field(default_factory=dict)
    ppid: dict[int, int] = field(default_factory=dict)

    def sample(self, pids: Iterable[int], first: bool) -> None:
        for pid in pids:
            stat = read_stat(pid)
            if stat is None:
                continue
            if first:
                self.baseline[pid] = stat.cpu
            self.last[pid] = stat.cpu
            self.ppid[pid] = stat.ppid

    def total(self, reaped_by: int | None = None, reaped_cpu: float = 0.0) -> float:
        """CPU seconds used in the window. Processes whose parent is
        ``reaped_by`` and that are gone count through ``reaped_cpu`` (the
        growth of that parent's cutime + cstime) instead of their samples."""
        total = reaped_cpu if reaped_by is not None else 0.0
        for pid, cpu in self.last.items():
            base = self.baseline.get(pid, 0.0)
            gone = reaped_by is not None and self.ppid.get(pid) == reaped_by
            if gone and read_stat(pid) is None:
                total -= base  # its whole life is in reaped_cpu, the window's part only counts
            else:
                total += cpu - base
        return total


class CpuMeter:
    """CPU seconds of a pool (``root`` and descendants) and of PostgreSQL
    (``postmaster``'s processes serving ``database``) between :meth:`start`
    and :meth:`stop`; at :meth:`stop`, the summed peak RSS of ``rss_pids()``
    (default: the pool's processes, root included)."""

    def __init__(
        self,
        root: int,
        *,
        postmaster: int | None,
        database: str,
        interval: float = 0.25,
        rss_pids: Callable[[], Iterable[int]] | None = None,
    ) -> None:
        self.root = root
        self.postmaster = postmaster
        self.database = database
        self.interval = interval
        self.rss_pids = rss_pids
        self._pool = _Group()
        self._pg = _Group()
        self._root_reaped = 0.0
        self._own_cpu = 0.0  # the meter's own sampling, taken out when it runs in root
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool_pids: set[int] = set()
        self.result: dict[str, float | None] = {}

    def _sample(self, first: bool = False) -> None:
        began = time.thread_time()
        try:
            self._read(first)
        finally:
            self._own_cpu += time.thread_time() - began

    def _read(self, first: bool) -> None:
        table = parents()
        exclude = [self.postmaster] if self.postmaster else []
        self._pool_pids = descendants(self.root, table, exclude)
        self._pool.sample(self._pool_pids, first)
        if self.postmaster is not None:
            self._pg.sample(postgres_processes(self.postmaster, self.database, table), first)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> None:
        stat = read_stat(self.root)
        self._root_reaped = stat.children_cpu if stat else 0.0
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, name="cpu-meter", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float | None]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        stat = read_stat(self.root)
        reaped = (stat.children_cpu if stat else 0.0) - self._root_reaped
        rss_pids = self._pool_pids if self.rss_pids is None else set(self.rss_pids())
        pool_cpu = self._pool.total(self.root, reaped)
        if self.root == os.getpid():  # /proc counts in 10 ms ticks: never below 0
            pool_cpu = max(0.0, pool_cpu - self._own_cpu)
        self.result = {
            "pool_cpu_s": pool_cpu,
            "postgres_cpu_s": self._pg.total() if self.postmaster is not None else None,
            "pool_peak_rss_mib": peak_rss_mib(rss_pids),
        }
        return self.result
