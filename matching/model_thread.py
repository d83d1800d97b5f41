"""Run every call into a model on one long-lived thread, whichever thread asks.

Why: torch's OpenMP runtime (libgomp) keeps a team of worker threads for each thread that starts
a parallel region. A service calls the model from a pool of request threads, so it grew a team
per request thread; once the teams hold more threads than there are cores, libgomp stops
spin-waiting at barriers and sleeps instead, and a forward pass has hundreds of barriers. On the
2-core machine one 200-word listing took 38-40 ms to embed from rotating threads against 22 ms
from one thread, and a batch of 32 1.5x as long.
"""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ModelThread:
    """One worker thread that runs calls in the order they arrive; callers wait for theirs.

    A call made from the worker thread itself (a model method calling another) runs at once.

    Args:
        name: the thread's name, as shown by debuggers and profilers.
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._inside = threading.local()

    def call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `function(*args, **kwargs)` on the worker thread and return (or raise) its
        outcome."""
        if getattr(self._inside, "active", False):
            return function(*args, **kwargs)
        return self._executor.submit(self._run, partial(function, *args, **kwargs)).result()

    def _run(self, work: Callable[[], T]) -> T:
        self._inside.active = True
        return work()
