"""A listing's semantic document, its vectors from one pass, and the evidence they pick."""

import numpy as np
import pytest

from matching.documents import semantic_document
from matching.embedding import Embedder
from matching.facts import ListingFacts, ModelFacts, ScenarioFacts
from matching.listing_vectors import EVIDENCE_CHARS, embed_listings, evidence

_MODEL = ListingFacts(
    id=1,
    kind="model",
    title="TrafficNet",
    summary="Forecasts road traffic",
    description=(
        "## Details\n\nTrained on **loop detector** counts.\n\n- Hourly output\n- Runs on CPU"
    ),
    tags=("traffic",),
    attributes=ModelFacts(tasks=("time_series_forecasting",)),
)


class TestSemanticDocument:
    def test_facts_and_tags_lead_then_every_sentence_in_order(self) -> None:
        document = semantic_document(_MODEL)
        assert document.sentences == (
            "Forecasts road traffic",
            "Trained on loop detector counts.",
            "Hourly output",
            "Runs on CPU",
        )
        assert document.text == (
            "time series forecasting. traffic. Forecasts road traffic. "
            "Trained on loop detector counts. Hourly output. Runs on CPU."
        )

    def test_each_span_locates_its_sentence_in_the_text(self) -> None:
        document = semantic_document(_MODEL)
        assert [document.text[a:b] for a, b in document.spans] == list(document.sentences)

    def test_scenario_statements_are_sentences_too(self) -> None:
        scenario = ListingFacts(
            id=2,
            kind="scenario",
            title="Junction counts",
            description="",
            attributes=ScenarioFacts(
                problem_statement="Queues grow at rush hour。", desired_outcome="Shorter waits"
            ),
        )
        document = semantic_document(scenario)
        assert document.sentences == ("Queues grow at rush hour。", "Shorter waits")
        assert [document.text[a:b] for a, b in document.spans] == list(document.sentences)

    def test_a_listing_with_nothing_but_a_title_embeds_its_title(self) -> None:
        bare = ListingFacts(id=3, kind="dataset", title=" Road counts ", description="")
        assert semantic_document(bare).text == "Road counts"
        assert semantic_document(bare).sentences == ()


class TestEvidence:
    def test_picks_the_sentence_closest_to_the_query(self) -> None:
        vectors = np.eye(4, dtype=np.float32)
        query = np.array([0, 0.6, 0.8, 0], dtype=np.float32)
        assert evidence(_MODEL, vectors, query) == "Hourly output"

    def test_only_sentences_with_a_vector_compete(self) -> None:
        vectors = np.eye(4, dtype=np.float32)[:2]
        query = np.array([0, 0.6, 0.8, 0], dtype=np.float32)
        assert evidence(_MODEL, vectors, query) == "Trained on loop detector counts."

    def test_vectors_of_an_earlier_longer_text_pick_among_the_sentences_left(self) -> None:
        vectors = np.eye(6, dtype=np.float32)  # six vectors, but the text has four sentences
        nearest_gone = np.array([0, 0.3, 0, 0, 0, 0.9], dtype=np.float32)
        assert evidence(_MODEL, vectors, nearest_gone) == "Trained on loop detector counts."
        bare = ListingFacts(id=3, kind="dataset", title="Road counts", description="")
        assert evidence(bare, vectors, nearest_gone) == "Road counts"

    def test_first_sentence_without_vectors_and_title_without_sentences(self) -> None:
        query = np.ones(4, dtype=np.float32)
        assert evidence(_MODEL, np.zeros((0, 4), np.float32), query) == "Forecasts road traffic"
        bare = ListingFacts(id=3, kind="dataset", title="Road counts", description="")
        assert evidence(bare, np.zeros((0, 4), np.float32), query) == "Road counts"

    def test_long_sentences_are_cut(self) -> None:
        wordy = ListingFacts(id=4, kind="dataset", title="t", description="word " * 200)
        shown = evidence(wordy, np.ones((1, 4), np.float32), np.ones(4, np.float32))
        assert len(shown) == EVIDENCE_CHARS


class TestEmbedListings:
    def test_one_vector_per_listing_and_per_sentence(self, hashing_embedder: Embedder) -> None:
        embedded = embed_listings(hashing_embedder, [_MODEL])
        assert embedded.listings.shape == (1, hashing_embedder.dimension)
        assert embedded.sentences[0].shape == (4, hashing_embedder.dimension)
        sentences = list(semantic_document(_MODEL).sentences)
        np.testing.assert_array_equal(embedded.sentences[0], hashing_embedder.encode(sentences))

    @pytest.mark.slow
    def test_with_the_real_model_evidence_follows_meaning(self, embedder: Embedder) -> None:
        embedded = embed_listings(embedder, [_MODEL])
        query = embedder.encode(["Does it need a GPU?"])[0]
        assert evidence(_MODEL, embedded.sentences[0], query) == "Runs on CPU"
