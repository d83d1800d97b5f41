"""ModelThread: calls from any thread run on its one thread, in order, re-entrantly."""

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from matching.embedding import SentenceTransformerEmbedder
from matching.model_thread import ModelThread


class TestModelThread:
    def test_calls_from_many_threads_run_on_one_thread(self) -> None:
        runner = ModelThread("test-model")
        with ThreadPoolExecutor(8) as callers:
            idents = set(callers.map(lambda _: runner.call(threading.get_ident), range(32)))

        assert len(idents) == 1
        assert threading.get_ident() not in idents

    def test_returns_results_and_raises_errors_to_the_caller(self) -> None:
        runner = ModelThread("test-model")

        assert runner.call(divmod, 7, 2) == (3, 1)
        with pytest.raises(ZeroDivisionError):
            runner.call(divmod, 1, 0)
        assert runner.call(sum, [1, 2]) == 3  # still serving after an error

    def test_a_call_from_the_thread_itself_runs_at_once(self) -> None:
        runner = ModelThread("test-model")

        def outer() -> tuple[int, int]:
            return threading.get_ident(), runner.call(threading.get_ident)

        first, nested = runner.call(outer)

        assert first == nested


def hold(runner: ModelThread) -> threading.Event:
    """Keep the runner's thread busy until the returned event is set."""
    gate, busy = threading.Event(), threading.Event()

    def wait() -> None:
        busy.set()
        gate.wait(10)

    threading.Thread(target=runner.call, args=(wait,), daemon=True).start()
    assert busy.wait(10)
    return gate


def queue_length(runner: ModelThread) -> int:
    with runner._ready:
        return len(runner._jobs)


def submit_while_held(runner: ModelThread, calls: list[Callable[[], object]]) -> list[object]:
    """Queue the calls in order behind a held runner, then release it; their outcomes."""
    gate = hold(runner)
    with ThreadPoolExecutor(len(calls)) as callers:
        futures = []
        for n, call in enumerate(calls):
            futures.append(callers.submit(call))
            while queue_length(runner) < n + 1:
                time.sleep(0.001)
        gate.set()
        return [future.result(10) for future in futures]


class Doubler:
    def __init__(self) -> None:
        self.runs: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.runs.append(list(items))
        return [2 * item for item in items]


class TestCallBatched:
    def test_calls_waiting_together_run_as_one_and_each_gets_its_own_results(self) -> None:
        runner, double = ModelThread("test-model"), Doubler()

        results = submit_while_held(
            runner, [lambda n=n: runner.call_batched(double, [n, 10 * n]) for n in (1, 2, 3)]
        )

        assert results == [[2, 20], [4, 40], [6, 60]]
        assert double.runs == [[1, 10, 2, 20, 3, 30]]

    def test_only_equal_functions_merge_and_other_calls_keep_their_order(self) -> None:
        runner, double, other = ModelThread("test-model"), Doubler(), Doubler()
        order: list[str] = []

        results = submit_while_held(
            runner,
            [
                lambda: runner.call_batched(double, [1]),
                lambda: runner.call(order.append, "plain"),
                lambda: runner.call_batched(other, [2]),
                lambda: runner.call_batched(double, [3]),
            ],
        )

        assert results == [[2], None, [4], [6]]
        assert double.runs == [[1, 3]]
        assert other.runs == [[2]]
        assert order == ["plain"]

    def test_a_merged_run_stays_within_the_item_limit_without_splitting_a_caller(self) -> None:
        runner, double = ModelThread("test-model", max_batch_items=4), Doubler()

        submit_while_held(
            runner,
            [
                lambda: runner.call_batched(double, [1, 2]),
                lambda: runner.call_batched(double, [3, 4, 5]),
                lambda: runner.call_batched(double, [6, 7]),
                lambda: runner.call_batched(double, [8, 9, 10, 11, 12]),
            ],
        )

        assert double.runs == [[1, 2, 6, 7], [3, 4, 5], [8, 9, 10, 11, 12]]

    def test_a_failing_item_fails_only_its_own_caller_and_the_thread_serves_on(self) -> None:
        runner = ModelThread("test-model")
        runs: list[list[int]] = []

        def double_but_not_13(items: Sequence[int]) -> list[int]:
            runs.append(list(items))
            if 13 in items:
                raise RuntimeError("no 13")
            return [2 * item for item in items]

        def outcome(items: list[int]) -> object:
            try:
                return runner.call_batched(double_but_not_13, items)
            except RuntimeError as error:
                return str(error)

        results = submit_while_held(
            runner, [lambda: outcome([1]), lambda: outcome([13, 2]), lambda: outcome([3])]
        )

        assert results == [[2], "no 13", [6]]
        assert runs == [[1, 13, 2, 3], [1], [13, 2], [3]]  # merged, then each alone
        assert runner.call_batched(double_but_not_13, [5]) == [10]

    def test_a_function_that_loses_results_is_an_error(self) -> None:
        runner = ModelThread("test-model")

        with pytest.raises(ValueError, match="2 items gave 1 results"):
            runner.call_batched(lambda items: [0], [1, 2])

    def test_a_batched_call_from_the_thread_itself_runs_at_once(self) -> None:
        runner, double = ModelThread("test-model"), Doubler()

        assert runner.call(lambda: runner.call_batched(double, [4])) == [8]


@pytest.mark.slow
class TestEmbedderRunsOnItsModelThread:
    def test_forward_passes_from_request_threads_all_run_on_one_thread(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        if embedder.bulk_threads == 1:
            pytest.skip("one core: bulk calls are single-threaded and run on their callers")
        texts = ["Hourly traffic counts from road sensors.", "城市交通流量数据"]
        expected = embedder.encode(texts, bulk=True)
        forward_threads: set[int] = set()
        hook = embedder._model.register_forward_hook(
            lambda *_: forward_threads.add(threading.get_ident())
        )
        try:
            with ThreadPoolExecutor(4) as callers:
                results = list(callers.map(lambda _: embedder.encode(texts, bulk=True), range(8)))
            results.append(embedder.encode_spans(texts, [[(0, 6)], [(0, 2)]], bulk=True)[0])
        finally:
            hook.remove()

        assert len(forward_threads) == 1
        for vectors in results:
            np.testing.assert_allclose(vectors, expected, atol=1e-6)

    def test_single_threaded_queries_run_on_their_callers_threads(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        """One torch thread forms no OpenMP team, so concurrent queries need not queue."""
        assert embedder._torch_threads_for(bulk=False) == 1  # the default num_threads
        forward_threads: set[int] = set()

        def query(n: int) -> int:
            embedder.encode([f"query {n}"])
            return threading.get_ident()

        hook = embedder._model.register_forward_hook(
            lambda *_: forward_threads.add(threading.get_ident())
        )
        try:
            with ThreadPoolExecutor(4) as callers:
                callers_threads = set(callers.map(query, range(16)))
        finally:
            hook.remove()

        assert forward_threads == callers_threads

    def test_concurrent_span_encodings_share_one_forward_pass(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        if embedder.bulk_threads == 1:
            pytest.skip("one core: bulk calls are single-threaded and run on their callers")
        texts = [
            "Hourly traffic counts from 400 road sensors. Collected in Hefei.",
            "水稻病虫害田间图像数据集。覆盖安徽省十二个县。",
            "A detector of cracks in bridge decks. Trained on drone images.",
        ]
        spans = [[(0, 44)], [(0, 12)], [(0, 36)]]
        alone = [
            embedder.encode_spans([t], [s], bulk=True) for t, s in zip(texts, spans, strict=True)
        ]
        passes: list[int] = []
        hook = embedder._model.register_forward_hook(lambda *_: passes.append(1))
        try:
            merged = submit_while_held(
                embedder._model_thread,
                [
                    lambda t=t, s=s: embedder.encode_spans([t], [s], bulk=True)
                    for t, s in zip(texts, spans, strict=True)
                ],
            )
        finally:
            hook.remove()

        assert len(passes) == 1
        for (vectors, pooled), (own_vectors, own_pooled) in zip(merged, alone, strict=True):  # type: ignore[misc]
            assert vectors.shape == (1, embedder.dimension)
            assert float(vectors[0] @ own_vectors[0]) > 0.999
            assert pooled[0].shape == own_pooled[0].shape
            assert float(pooled[0][0] @ own_pooled[0][0]) > 0.999
