"""ModelThread: calls from any thread run on its one thread, in order, re-entrantly."""

import threading
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
