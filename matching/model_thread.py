"""Run every call into a model on one long-lived thread, whichever thread asks.

Why: torch's OpenMP runtime (libgomp) keeps a team of worker threads for each thread that starts
a parallel region. A service calls the model from a pool of request threads, so it grew a team
per request thread; once the teams hold more threads than there are cores, libgomp stops
spin-waiting at barriers and sleeps instead, and a forward pass has hundreds of barriers. On the
2-core machine one 200-word listing took 38-40 ms to embed from rotating threads against 22 ms
from one thread, and a batch of 32 1.5x as long.

One thread also lets concurrent requests share a forward pass: `call_batched` work that waits
while the model is busy runs as one batch, which embeds several texts in far less time than
one at a time.
"""

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Job:
    """Work for the thread: a call, or items for a batched function (`batched` is True)."""

    function: Callable[..., Any]
    arguments: tuple[Any, ...] = ()
    keywords: dict[str, Any] = field(default_factory=dict)
    items: Sequence[Any] = ()
    batched: bool = False
    future: Future[Any] = field(default_factory=Future)


class ModelThread:
    """One worker thread that runs calls in the order they arrive (batched work that can join
    an earlier batch runs with it); callers wait for theirs.

    A call made from the worker thread itself (a model method calling another) runs at once.

    Args:
        name: the thread's name, as shown by debuggers and profilers.
        max_batch_items: the most items one merged `call_batched` run takes.
    """

    def __init__(self, name: str, *, max_batch_items: int = 64) -> None:
        self.max_batch_items = max_batch_items
        self._jobs: deque[_Job] = deque()
        self._ready = threading.Condition()
        self._inside = threading.local()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `function(*args, **kwargs)` on the worker thread and return (or raise) its
        outcome."""
        if self._on_worker():
            return function(*args, **kwargs)
        return self._submit(_Job(function, args, kwargs)).result()  # type: ignore[no-any-return]

    def call_batched(
        self, function: Callable[[Sequence[Item]], Sequence[Result]], items: Sequence[Item]
    ) -> list[Result]:
        """Run `function(items)` on the worker thread, merged with other callers' items.

        Calls of an equal function waiting when the worker takes this one run with it as one
        call over all their items (up to `max_batch_items`, never splitting a caller's items),
        in arrival order; each caller gets its own items' results. If the merged call fails,
        each caller's items run again alone, so an error reaches only the callers it belongs to.

        Args:
            function: maps items to one result each, in order; it must treat items
                independently, since it sees them beside other callers' items.
            items: this caller's items.

        Returns:
            The results of this caller's items, in order.
        """
        if self._on_worker() or not items:
            return _results_of(function, items)
        return self._submit(_Job(function, items=items, batched=True)).result()  # type: ignore[no-any-return]

    def _on_worker(self) -> bool:
        return getattr(self._inside, "active", False)

    def _submit(self, job: _Job) -> Future[Any]:
        with self._ready:
            self._jobs.append(job)
            self._ready.notify()
        return job.future

    def _serve(self) -> None:
        self._inside.active = True
        while True:
            jobs = self._next_jobs()
            if len(jobs) > 1:
                self._run_merged(jobs)
            else:
                self._run_alone(jobs[0])

    @staticmethod
    def _run_alone(job: _Job) -> None:
        """Run one job; its caller gets the result or the error, and the thread serves on."""
        try:
            if job.batched:
                job.future.set_result(_results_of(job.function, job.items))
            else:
                job.future.set_result(job.function(*job.arguments, **job.keywords))
        except BaseException as error:
            job.future.set_exception(error)

    def _run_merged(self, jobs: list[_Job]) -> None:
        """Run batched jobs as one call; if it fails, each alone, so that only the callers whose
        items fail get an error, not their neighbours."""
        try:
            results = _results_of(jobs[0].function, [item for job in jobs for item in job.items])
        except Exception:
            for job in jobs:
                self._run_alone(job)
            return
        start = 0
        for job in jobs:
            end = start + len(job.items)
            job.future.set_result(results[start:end])
            start = end

    def _next_jobs(self) -> list[_Job]:
        """The next job and, when it is batched, the waiting jobs that run with it."""
        with self._ready:
            while not self._jobs:
                self._ready.wait()
            first = self._jobs.popleft()
            if not first.batched:
                return [first]
            taken, size, rest = [first], len(first.items), deque[_Job]()
            while self._jobs:
                job = self._jobs.popleft()
                fits = size + len(job.items) <= self.max_batch_items
                if job.batched and job.function == first.function and fits:
                    taken.append(job)
                    size += len(job.items)
                else:
                    rest.append(job)
            self._jobs.extendleft(reversed(rest))
            return taken


def _results_of(
    function: Callable[[Sequence[Item]], Sequence[Result]], items: Sequence[Item]
) -> list[Result]:
    """`function(items)` as a list, one result per item.

    Raises:
        ValueError: the function gave another number of results.
    """
    results = list(function(items))
    if len(results) != len(items):
        raise ValueError(f"{len(items)} items gave {len(results)} results")
    return results
