"""The embedders: the real default model (loaded once per session) and the hashing test double."""

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from matching.embedding import (
    DEFAULT_MODEL_NAME,
    BackgroundLoadedEmbedder,
    Embedder,
    EmbedderUnavailable,
    SentenceTransformerEmbedder,
    default_model_path,
    encode_spans,
    pool_spans,
)
from tests.matching.conftest import HashingEmbedder


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


class TestDefaultModelPath:
    def test_points_at_the_packaged_model_folder(self) -> None:
        folder = Path(default_model_path())
        assert (folder / "modules.json").is_file()
        assert (folder / "model.safetensors").is_file()


@pytest.mark.slow
class TestSentenceTransformerEmbedder:
    texts = (
        "Traffic flow sensors on city roads, recorded every five minutes.",
        "A dataset of road traffic counts collected by municipal sensors.",
        "Recipes for baking sourdough bread at home.",
    )

    def test_returns_one_float32_row_per_text(self, embedder: SentenceTransformerEmbedder) -> None:
        vectors = embedder.encode(self.texts)
        assert vectors.shape == (3, 384)
        assert vectors.dtype == np.float32
        assert vectors.flags.c_contiguous

    def test_rows_have_unit_length(self, embedder: SentenceTransformerEmbedder) -> None:
        norms = np.linalg.norm(embedder.encode(self.texts, bulk=True), axis=1)
        np.testing.assert_allclose(norms, 1.0, atol=1e-5)

    def test_similar_english_texts_score_higher_than_unrelated_ones(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        traffic, counts, bread = embedder.encode(self.texts)
        assert _cosine(traffic, counts) > _cosine(traffic, bread) + 0.3

    def test_similar_chinese_texts_score_higher_than_unrelated_ones(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        # all-MiniLM-L6-v2 is trained on English: it ranks Chinese by shared characters, weakly.
        cat, kitten, stocks = embedder.encode(["猫坐在垫子上", "一只小猫在地毯上", "股市崩盘了"])
        assert _cosine(cat, kitten) > _cosine(cat, stocks)

    def test_bulk_vectors_stay_interchangeable_with_query_vectors(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        queries = embedder.encode(self.texts)
        bulk = embedder.encode(self.texts, bulk=True)
        assert np.einsum("ij,ij->i", queries, bulk).min() >= 0.998

    def test_bf16_vectors_stay_within_cosine_0_998_of_fp32(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        fp32 = embedder.encode_with(self.texts, precision="fp32")
        bf16 = embedder.encode_with(self.texts, precision="bf16")
        assert np.einsum("ij,ij->i", fp32, bf16).min() >= 0.998

    def test_a_text_gets_the_same_vector_alone_or_in_a_batch(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        # Padding to the longest text of a batch must not change the others' vectors.
        alone = embedder.encode(self.texts[2:])[0]
        batched = embedder.encode(self.texts)[2]
        assert _cosine(alone, batched) >= 0.9999

    def test_empty_input_gives_no_rows(self, embedder: SentenceTransformerEmbedder) -> None:
        vectors = embedder.encode([])
        assert vectors.shape == (0, 384)
        assert vectors.dtype == np.float32

    def test_rejects_a_bare_string(self, embedder: SentenceTransformerEmbedder) -> None:
        with pytest.raises(TypeError, match="not a single string"):
            embedder.encode("one text")

    def test_names_the_default_model_portably(self, embedder: SentenceTransformerEmbedder) -> None:
        assert embedder.model_name == DEFAULT_MODEL_NAME
        assert embedder.dimension == 384

    def test_never_downloads_a_missing_model(self, embedder: SentenceTransformerEmbedder) -> None:
        # Depends on the session model so sentence-transformers is already imported (cheap).
        with pytest.raises(OSError):
            SentenceTransformerEmbedder("scenario-exchange/no-such-model")

    def test_satisfies_the_embedder_protocol(self, embedder: SentenceTransformerEmbedder) -> None:
        as_protocol: Embedder = embedder
        assert as_protocol.encode(["x"]).shape == (1, as_protocol.dimension)


class TestHashingEmbedder:
    def test_is_deterministic_and_normalised(self, hashing_embedder: Embedder) -> None:
        first = hashing_embedder.encode(["city traffic", "hospital records"])
        again = hashing_embedder.encode(["city traffic", "hospital records"])
        np.testing.assert_array_equal(first, again)
        np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)


class _FirstAxis(HashingEmbedder):
    """A model of the same name as HashingEmbedder's, telling its vectors apart: all (1, 0, ...)."""

    def encode(
        self, texts: Sequence[str], *, batch_size: int = 32, bulk: bool = False
    ) -> npt.NDArray[np.float32]:
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        vectors[:, 0] = 1
        return vectors


class TestBackgroundLoadedEmbedder:
    texts = ("red apples. green pears.", "blue sky.")

    def test_answers_once_the_model_has_loaded(self, hashing_embedder: Embedder) -> None:
        released = threading.Event()

        def load() -> Embedder:
            released.wait(30)
            return hashing_embedder

        loading = BackgroundLoadedEmbedder(load, model_name=hashing_embedder.model_name).start()
        assert not loading.ready and not loading.failed
        with pytest.raises(EmbedderUnavailable, match="still loading"):
            loading.wait(timeout=0.01)
        released.set()
        np.testing.assert_array_equal(
            loading.encode(self.texts), hashing_embedder.encode(self.texts)
        )
        assert loading.ready and loading.dimension == hashing_embedder.dimension
        spans = [[(0, 11)], [(0, 9)]]
        _, pooled = encode_spans(loading, self.texts, spans)
        _, expected = encode_spans(hashing_embedder, self.texts, spans)
        np.testing.assert_array_equal(pooled[0], expected[0])

    def test_queries_go_to_the_query_encoder_while_the_model_loads(
        self, hashing_embedder: Embedder
    ) -> None:
        released = threading.Event()

        def load() -> Embedder:
            released.wait(30)
            return hashing_embedder

        name = hashing_embedder.model_name
        loading = BackgroundLoadedEmbedder(load, model_name=name, queries=hashing_embedder)
        loading.start()
        assert loading.queries_ready and not loading.ready
        np.testing.assert_array_equal(
            loading.encode(self.texts), hashing_embedder.encode(self.texts)
        )
        assert loading.dimension == hashing_embedder.dimension
        with pytest.raises(EmbedderUnavailable, match="still loading"):
            loading.wait(timeout=0.01)
        released.set()
        assert loading.encode(self.texts, bulk=True).shape == (2, hashing_embedder.dimension)
        with pytest.raises(ValueError, match="a query encoder of 'test-hashing-8'"):
            loading.use_for_queries(HashingEmbedder(8))

    def test_writes_go_to_the_query_encoder_until_the_model_is_in(self) -> None:
        released = threading.Event()
        model, queries = _FirstAxis(16), HashingEmbedder(16)

        def load() -> Embedder:
            released.wait(30)
            return model

        loading = BackgroundLoadedEmbedder(load, model_name=model.model_name, queries=queries)
        assert loading.writes_ready and not loading.ready
        np.testing.assert_array_equal(
            loading.encode(self.texts, bulk=True), queries.encode(self.texts)
        )
        _, spans = encode_spans(loading, self.texts, [[(0, 11)], [(0, 9)]], bulk=True)
        assert spans[0].shape == (1, 16)
        released.set()
        loading.wait()
        np.testing.assert_array_equal(
            loading.encode(self.texts, bulk=True), model.encode(self.texts)
        )

    def test_once_the_model_failed_writes_fail_and_queries_go_on(self) -> None:
        def load() -> Embedder:
            raise OSError("no model at /nowhere")

        loading = BackgroundLoadedEmbedder(load, model_name="/nowhere", queries=HashingEmbedder(8))
        with pytest.raises(EmbedderUnavailable, match="no model at /nowhere"):
            loading.wait()
        with pytest.raises(EmbedderUnavailable, match="no model at /nowhere"):
            loading.encode(self.texts, bulk=True)
        assert loading.encode(self.texts).shape == (2, 8)
        assert loading.failed and not loading.writes_ready and loading.queries_ready

    def test_the_first_use_starts_a_load_nobody_started(self, hashing_embedder: Embedder) -> None:
        loading = BackgroundLoadedEmbedder(
            lambda: hashing_embedder, model_name=hashing_embedder.model_name
        )
        assert not loading.ready
        assert loading.encode(self.texts, bulk=True).shape == (2, hashing_embedder.dimension)
        assert loading.ready

    def test_a_failed_load_is_raised_to_every_caller(self) -> None:
        def load() -> Embedder:
            raise OSError("no model at /nowhere")

        loading = BackgroundLoadedEmbedder(load, model_name="/nowhere").start()
        for _ in range(2):
            with pytest.raises(EmbedderUnavailable, match="no model at /nowhere"):
                loading.encode(self.texts)
        assert loading.failed and not loading.ready

    def test_refuses_a_model_of_another_name(self, hashing_embedder: Embedder) -> None:
        loading = BackgroundLoadedEmbedder(lambda: hashing_embedder, model_name="other-model")
        loading.start()
        with pytest.raises(EmbedderUnavailable, match="not 'other-model'"):
            loading.wait()


class TestSpans:
    def test_pooling_averages_the_tokens_inside_each_span(self) -> None:
        tokens = np.array([[9, 9], [1, 0], [3, 0], [0, 2], [9, 9]], dtype=np.float32)
        # [CLS] "ab" "cd" | "ef" [SEP]: special tokens have empty offsets and are never pooled.
        offsets = np.array([[0, 0], [0, 2], [2, 4], [5, 7], [0, 0]])
        pooled = pool_spans(tokens, offsets, [(0, 4), (5, 7)])
        np.testing.assert_allclose(pooled, [[1, 0], [0, 1]])

    def test_pooling_stops_at_the_first_span_past_the_tokens(self) -> None:
        tokens = np.eye(3, dtype=np.float32)
        offsets = np.array([[0, 0], [0, 3], [0, 0]])
        assert pool_spans(tokens, offsets, [(0, 3), (4, 9), (10, 12)]).shape == (1, 3)

    def test_embedders_without_late_chunking_embed_each_span_alone(
        self, hashing_embedder: Embedder
    ) -> None:
        texts = ["red apples. green pears.", "blue sky."]
        vectors, spans = encode_spans(hashing_embedder, texts, [[(0, 11), (12, 24)], [(0, 9)]])
        np.testing.assert_array_equal(vectors, hashing_embedder.encode(texts))
        expected = hashing_embedder.encode(["red apples.", "green pears."])
        np.testing.assert_array_equal(spans[0], expected)
        assert spans[1].shape == (1, hashing_embedder.dimension)


@pytest.mark.slow
class TestLateChunking:
    text = (
        "Counts of vehicles at each junction, every five minutes. "
        "The data cover three years of the city's ring road. "
        "Recipes for sourdough bread are not included."
    )
    spans = ((0, 56), (57, 108), (109, 155))

    def test_text_vectors_equal_those_of_encode(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        vectors, _ = embedder.encode_spans([self.text], [self.spans], bulk=True)
        np.testing.assert_allclose(vectors, embedder.encode([self.text], bulk=True), atol=1e-6)

    def test_span_vectors_lie_near_those_of_the_spans_embedded_alone(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        assert [self.text[a:b][-6:] for a, b in self.spans] == ["nutes.", " road.", "luded."]
        _, (pooled,) = embedder.encode_spans([self.text], [self.spans])
        alone = embedder.encode([self.text[a:b] for a, b in self.spans])
        similarity = pooled @ alone.T
        assert pooled.shape == (3, 384)
        # Each pooled sentence is closest to the same sentence embedded on its own.
        assert list(similarity.argmax(axis=1)) == [0, 1, 2]
        assert float(similarity.diagonal().min()) > 0.6

    def test_spans_past_the_model_window_get_no_vector(
        self, embedder: SentenceTransformerEmbedder
    ) -> None:
        sentence = "Sensors record traffic on the ring road every five minutes. "
        text = sentence * 40  # about 480 word pieces: the model reads the first 256
        spans = [(n * len(sentence), (n + 1) * len(sentence) - 1) for n in range(40)]
        _, (pooled,) = embedder.encode_spans([text], [spans])
        assert 15 <= len(pooled) < 25
