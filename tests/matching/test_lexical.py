"""The incremental BM25 index."""

import io
import math

import pytest

import matching.lexical
from matching.lexical import LexicalIndex


def _index(documents: dict[int, str]) -> LexicalIndex:
    index = LexicalIndex()
    index.upsert(list(documents), list(documents.values()))
    return index


def _round_trip(index: LexicalIndex) -> LexicalIndex:
    """The index written between other data and read back, which must leave the data after it."""
    file = io.BytesIO()
    file.write(b"before")
    index.write(file)
    file.write(b"after")
    file.seek(len(b"before"))
    copy = LexicalIndex.read(file)
    assert file.read() == b"after"
    return copy


class TestLexicalIndex:
    def test_ranks_the_document_sharing_rare_terms_first(self) -> None:
        index = _index({1: "city traffic sensors", 2: "hospital records", 3: "traffic city parks"})
        hits = index.search("traffic sensors", 3)
        assert [hit.id for hit in hits] == [1, 3]

    def test_scores_follow_bm25(self) -> None:
        index = LexicalIndex(k1=0.9, b=0.4)
        index.upsert([1, 2], ["traffic traffic city", "parks"])
        # N=2, df=1: idf = ln(1 + 1.5 / 1.5); doc 1 has tf=2, length 3, average length 2.
        idf = math.log(2)
        norm = 0.9 * (1 - 0.4 + 0.4 * 3 / 2)
        expected = idf * 2 * 1.9 / (2 + norm)
        assert index.search("traffic", 1)[0].score == pytest.approx(expected)

    def test_reports_the_matched_query_terms(self) -> None:
        index = _index({1: "city traffic sensors", 2: "hospital records"})
        assert index.search("sensors in the city", 1)[0].matched_terms == ("sensor", "city")

    def test_matched_terms_can_be_asked_for_the_hits_shown_only(self) -> None:
        index = _index({1: "city traffic sensors", 2: "hospital records"})
        query = index.query("sensors in the city")
        (hit,) = index.search(query, 1, with_terms=False)
        assert hit.matched_terms == ()
        assert index.matched_terms(query, hit.id) == ("sensor", "city")
        assert index.matched_terms("hospital sensors", 2) == ("hospital",)
        assert index.matched_terms(query, 99) == ()

    def test_finds_chinese_documents_by_chinese_words(self) -> None:
        index = _index({1: "上海市城市交通流量数据集", 2: "医院电子病历", 3: "traffic flow"})
        assert [hit.id for hit in index.search("交通流量", 3)] == [1]

    def test_returns_only_allowed_ids(self) -> None:
        index = _index({1: "traffic data", 2: "traffic data", 3: "traffic data"})
        assert {hit.id for hit in index.search("traffic", 3, allowed_ids=[2, 3, 99])} == {2, 3}

    def test_also_scores_given_ids_beyond_the_top_k(self) -> None:
        index = _index({1: "traffic traffic data", 2: "traffic data", 3: "traffic", 4: "parks"})
        hits = index.search("traffic", 1, also=[3, 4, 99])
        # The best hit, then the asked-for ids that share a term (4 shares none, 99 is unknown).
        assert [hit.id for hit in hits] == [1, 3]
        assert [hit.id for hit in index.search("traffic", 0, also=[2])] == [2]

    def test_a_long_query_keeps_its_rarest_terms(self) -> None:
        common = " ".join(f"word{n}" for n in range(8))
        documents = {n: f"{common} filler{n}" for n in range(20)}
        documents[99] = "bathymetry sonar survey"
        index = LexicalIndex(max_query_terms=2)
        index.upsert(list(documents), list(documents.values()))
        hits = index.search(f"{common} bathymetry sonar", 5)
        # Only the two rarest query terms are scored: the eight shared by every document drop.
        assert [hit.id for hit in hits] == [99]
        assert hits[0].matched_terms == ("bathymetry", "sonar")

    def test_scores_stay_exact_across_writes_between_searches(self) -> None:
        documents = {n: f"traffic sensor{n % 5} city{n % 3}" for n in range(50)}
        index = _index(documents)
        index.search("traffic sensor1 city2", 50)  # weights cached for these statistics
        index.upsert([7, 90], ["traffic traffic traffic harbour", "sensor1 " * 30])
        index.remove([3])
        documents.update({7: "traffic traffic traffic harbour", 90: "sensor1 " * 30})
        del documents[3]
        assert index.search("traffic sensor1 city2", 50) == _index(documents).search(
            "traffic sensor1 city2", 50
        )

    def test_upsert_replaces_a_document(self) -> None:
        index = _index({1: "traffic data", 2: "hospital data"})
        index.upsert([1], ["weather data"])
        assert index.search("traffic", 5) == []
        assert [hit.id for hit in index.search("weather", 5)] == [1]
        assert len(index) == 2

    def test_remove_forgets_documents_and_their_statistics(self) -> None:
        index = _index({1: "traffic data", 2: "traffic parks"})
        index.remove([1, 42])
        assert 1 not in index
        assert index.search("data", 5) == []
        fresh = _index({2: "traffic parks"})
        assert index.search("traffic", 1) == fresh.search("traffic", 1)

    def test_stays_correct_after_compacting_many_removals(self) -> None:
        index = _index({i: f"word{i} common" for i in range(3000)})
        index.remove(range(2500))
        hits = index.search("common word2999", 600)
        assert len(hits) == 500
        assert hits[0].id == 2999

    def test_compacting_replaced_documents_scores_as_a_fresh_index(self) -> None:
        documents = {i: f"word{i % 50} common{i % 7} traffic" for i in range(1200)}
        index = _index(documents)
        replaced = {i: f"harbour word{i % 9} traffic traffic" for i in range(0, 1200, 2)}
        index.upsert(list(replaced), list(replaced.values()))  # dead slots pass the live ones
        index.remove(range(1, 1200, 4))
        documents.update(replaced)
        for i in range(1, 1200, 4):
            del documents[i]
        fresh = _index(documents)
        for query in ("harbour word3", "common2 traffic", "word7", "traffic"):
            assert index.search(query, 100) == fresh.search(query, 100)
            assert index.matched_terms(query, 2) == fresh.matched_terms(query, 2)

    def test_merging_appends_during_a_bulk_load_changes_no_score(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        documents = {i: f"word{i % 50} common{i % 7} traffic 交通{i % 3}" for i in range(600)}
        unmerged = _index(documents)
        monkeypatch.setattr(matching.lexical, "_MERGE_EVERY", 7)
        merged = _index(documents)
        assert merged._unmerged < 7 < unmerged._unmerged
        for query in ("word3 common2", "traffic", "交通1 word9"):
            assert merged.search(query, 50) == unmerged.search(query, 50)

    def test_returns_nothing_for_a_query_without_known_terms(self) -> None:
        assert _index({1: "traffic"}).search("zebra", 5) == []

    def test_rejects_misaligned_ids_and_texts(self) -> None:
        with pytest.raises(ValueError, match="2 ids but 1 texts"):
            LexicalIndex().upsert([1, 2], ["only one"])


class TestSnapshot:
    def _documents(self) -> dict[int, str]:
        return {n: f"traffic sensor{n % 7} city{n % 3} 交通流量 word{n}" for n in range(200)}

    def test_a_read_index_answers_as_the_original(self) -> None:
        index = _index(self._documents())
        index.remove(range(0, 200, 5))
        copy = _round_trip(index)
        for query in ("traffic sensor3", "city1 word42", "交通流量", "zebra"):
            assert copy.search(query, 20) == index.search(query, 20)
        assert len(copy) == len(index) == 160

    def test_a_loaded_index_keeps_taking_writes(self) -> None:
        documents = self._documents()
        copy = _round_trip(_index(documents))
        copy.upsert([3, 500], ["hospital records", "traffic sensor3 harbour"])
        copy.remove([4])
        documents.update({3: "hospital records", 500: "traffic sensor3 harbour"})
        del documents[4]
        fresh = _index(documents)
        for query in ("traffic sensor3", "hospital", "harbour city2", "word4"):
            assert copy.search(query, 50) == fresh.search(query, 50)

    def test_compaction_after_loading_keeps_every_live_document(self) -> None:
        documents = {n: f"common word{n}" for n in range(3000)}
        copy = _round_trip(_index(documents))
        copy.remove(range(2000))
        assert len(copy.search("common", 2000)) == 1000
        assert copy.search("word2500", 1)[0].id == 2500

    def test_an_empty_index_round_trips(self) -> None:
        copy = _round_trip(LexicalIndex())
        assert len(copy) == 0
        copy.upsert([1], ["traffic"])
        assert copy.search("traffic", 1)[0].id == 1

    def test_a_truncated_file_is_refused(self) -> None:
        file = io.BytesIO()
        _index(self._documents()).write(file)
        with pytest.raises(ValueError, match="ends after"):
            LexicalIndex.read(io.BytesIO(file.getvalue()[:-10]))
