"""Jobs: what to run (`Job`, the `@job` decorator) and what was run (`QueuedJob`)."""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

from worker.errors import InvalidJobError

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Retry:
    """Delay before retry n (n = the failed attempt, from 1): ``min(limit, backoff *
    factor ** (n - 1))`` seconds, times a random factor in ``[1 - jitter, 1 + jitter]``.

    Defaults: 1 s, doubling, capped at 5 minutes, +/-10 % jitter (so that many jobs
    failing together do not come back together).
    """

    backoff: float = 1.0
    factor: float = 2.0
    limit: float = 300.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.backoff < 0 or self.limit < 0:
            raise InvalidJobError(f"retry backoff and limit must be >= 0, got {self}")
        if self.factor < 1:
            raise InvalidJobError(f"retry factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise InvalidJobError(f"retry jitter must be within 0..1, got {self.jitter}")

    def delay(self, attempt: int) -> float:
        """The delay before the attempt after ``attempt``, without jitter."""
        return min(self.limit, self.backoff * self.factor ** (attempt - 1))


@dataclass(frozen=True)
class Job:
    """An immutable description of work: which function, with which arguments,
    where and how. Derive variants with the ``with_*`` methods."""

    func: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: int = 0
    max_attempts: int = 1
    timeout: float | None = None
    scheduled_at: datetime | None = None
    unique_key: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    retry: Retry = field(default_factory=Retry)

    def __post_init__(self) -> None:
        if not self.func or "." not in self.func:
            raise InvalidJobError(
                f"job function {self.func!r} must be an import path like 'module.function'"
            )
        if not self.queue:
            raise InvalidJobError(f"job {self.func}: the queue name must not be empty")
        if self.max_attempts < 1:
            raise InvalidJobError(
                f"job {self.func}: max_attempts must be >= 1, got {self.max_attempts}"
            )
        if self.timeout is not None and self.timeout <= 0:
            raise InvalidJobError(f"job {self.func}: timeout must be > 0, got {self.timeout}")
        if self.scheduled_at is not None and self.scheduled_at.tzinfo is None:
            raise InvalidJobError(
                f"job {self.func}: scheduled_at must be timezone-aware, got {self.scheduled_at}"
            )

    def with_kwargs(self, **kwargs: Any) -> Self:
        return dataclasses.replace(self, kwargs={**self.kwargs, **kwargs})

    def with_priority(self, priority: int) -> Self:
        return dataclasses.replace(self, priority=priority)

    def with_queue(self, queue: str) -> Self:
        return dataclasses.replace(self, queue=queue)

    def with_max_attempts(self, max_attempts: int) -> Self:
        return dataclasses.replace(self, max_attempts=max_attempts)

    def with_scheduled_at(self, scheduled_at: datetime) -> Self:
        return dataclasses.replace(self, scheduled_at=scheduled_at)

    def with_delay(self, seconds: float | timedelta) -> Self:
        """Run no earlier than ``seconds`` from now (now: when this is called)."""
        delta = seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds)
        return dataclasses.replace(self, scheduled_at=datetime.now(UTC) + delta)

    def with_timeout(self, timeout: float | None) -> Self:
        return dataclasses.replace(self, timeout=timeout)

    def with_unique_key(self, unique_key: str | None) -> Self:
        return dataclasses.replace(self, unique_key=unique_key)

    def with_meta(self, **meta: Any) -> Self:
        return dataclasses.replace(self, meta={**self.meta, **meta})

    def with_retry(
        self,
        backoff: float = 1.0,
        factor: float = 2.0,
        limit: float = 300.0,
        jitter: float = 0.1,
    ) -> Self:
        return dataclasses.replace(
            self, retry=Retry(backoff=backoff, factor=factor, limit=limit, jitter=jitter)
        )

    def pack(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`unpack`): ``func`` and every field that
        differs from its default, so that stored definitions stay small."""
        packed: dict[str, Any] = {"func": self.func}
        for name, default in _PACK_DEFAULTS.items():
            value = getattr(self, name)
            if value != default:
                packed[name] = value
        if self.kwargs:
            packed["kwargs"] = dict(self.kwargs)
        if self.meta:
            packed["meta"] = dict(self.meta)
        if self.scheduled_at is not None:
            packed["scheduled_at"] = self.scheduled_at.isoformat()
        if self.retry != _DEFAULT_RETRY:
            packed["retry"] = dataclasses.asdict(self.retry)
        return packed

    @classmethod
    def unpack(cls, data: Mapping[str, Any]) -> Job:
        scheduled = data.get("scheduled_at")
        return cls(
            func=data["func"],
            kwargs=dict(data.get("kwargs") or {}),
            queue=data.get("queue", "default"),
            priority=data.get("priority", 0),
            max_attempts=data.get("max_attempts", 1),
            timeout=data.get("timeout"),
            scheduled_at=datetime.fromisoformat(scheduled) if scheduled else None,
            unique_key=data.get("unique_key"),
            meta=dict(data.get("meta") or {}),
            retry=Retry(**(data.get("retry") or {})),
        )


_DEFAULT_RETRY = Retry()
_PACK_DEFAULTS: dict[str, Any] = {
    "queue": "default",
    "priority": 0,
    "max_attempts": 1,
    "timeout": None,
    "unique_key": None,
}


@runtime_checkable
class IsAJob(Protocol):
    """A function decorated with :func:`job`: calling it calls the function,
    its ``.job`` is the :class:`Job`."""

    job: Job

    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...


def as_job(obj: Job | IsAJob) -> Job:
    if isinstance(obj, Job):
        return obj
    found = getattr(obj, "job", None)
    if isinstance(found, Job):
        return found
    raise TypeError(f"{obj!r} is not a job: decorate the function with @job() or pass a Job")


def import_path(func: Callable[..., Any]) -> str:
    """``module.qualname`` of ``func``. A function of a program run as a script is
    ``__main__.name``; when it was started with ``python -m pkg.mod`` the real
    module name is used so that other processes can import it."""
    module = func.__module__
    if module == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None and spec.name and spec.name != "__main__":
            module = spec.name
    qualname = func.__qualname__
    if "<locals>" in qualname:
        raise InvalidJobError(
            f"{module}.{qualname} is defined inside a function: jobs must be importable "
            "module-level functions"
        )
    return f"{module}.{qualname}"


def job(
    *,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int = 1,
    timeout: float | None = None,
    unique_key: str | None = None,
    meta: Mapping[str, Any] | None = None,
    retry: Retry | None = None,
) -> Callable[[F], F]:
    """Declare a (sync or async) function as a job. The function is returned
    unchanged, with a ``.job`` attribute holding its :class:`Job`."""

    def decorate(func: F) -> F:
        func.job = Job(  # type: ignore[attr-defined]
            func=import_path(func),
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            timeout=timeout,
            unique_key=unique_key,
            meta=dict(meta or {}),
            retry=retry or Retry(),
        )
        return func

    return decorate


class JobState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


@dataclass(frozen=True)
class QueuedJob:
    """A job as stored: its definition plus everything that happened to it."""

    id: str
    func: str
    kwargs: dict[str, Any]
    queue: str
    priority: int
    state: JobState
    attempts: int
    max_attempts: int
    errors: list[dict[str, Any]]
    result: Any
    meta: dict[str, Any]
    unique_key: str | None
    timeout: float | None
    created_at: datetime
    scheduled_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    worker_id: str | None
    cancel_requested: bool

    State = JobState

    @property
    def is_final(self) -> bool:
        return self.state.is_final


@dataclass(frozen=True)
class CurrentJob:
    """What a running job can know about itself (see :func:`current_job`)."""

    id: str
    func: str
    attempt: int
    max_attempts: int


_current_job: contextvars.ContextVar[CurrentJob | None] = contextvars.ContextVar(
    "pgdag_current_job", default=None
)


def current_job() -> CurrentJob | None:
    """Inside a job run by a worker: its id, function and attempt; else None."""
    return _current_job.get()


def uuid7() -> str:
    """A time-ordered UUID (RFC 9562 version 7): new job rows land at the right
    edge of the primary-key index instead of all over it."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# U+0000 as json.dumps writes it: \u0000 after an even number of backslashes
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def dump_json(value: Any, what: str) -> str:
    """``json.dumps`` with an error that says what could not be encoded; refuses
    U+0000, which PostgreSQL's jsonb cannot store."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidJobError(f"{what} is not JSON-serialisable: {exc}") from exc
    # the substring test first: the regex alone cost 20 us a workflow on every push
    if "\\u0000" in text and _JSON_NUL.search(text):
        raise InvalidJobError(
            f"{what} contains the character U+0000, which PostgreSQL's jsonb cannot store"
        )
    return text
