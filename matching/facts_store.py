"""The matcher's listing facts, kept encoded and decoded when a query reaches them.

As Python objects, the facts of 100,000 listings (texts, tuples, dates, decimals: about ten
objects each) take 1.5-3 s to unpickle from a snapshot, most of a restart, and a gigabyte at a
million listings. Kept as one compact `bytes` per listing (`matching.facts_codec`, about 470
bytes) they load in a fraction of that; ranking decodes only its candidates' facts without their
texts, and the most recently ranked stay decoded.
"""

from collections import OrderedDict
from collections.abc import Iterator

from matching import facts_codec
from matching.facts import ListingFacts

DEFAULT_CACHE_SIZE = 50_000


class FactsStore:
    """Listing facts by id: a mapping that stores each value encoded.

    Args:
        cache_size: how many decoded facts (without texts) to keep for ranking, least recently
            used dropped first.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.cache_size = cache_size
        self._encoded: dict[int, bytes] = {}
        self._for_ranking: OrderedDict[int, ListingFacts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._encoded)

    def __contains__(self, listing_id: object) -> bool:
        return listing_id in self._encoded

    def __iter__(self) -> Iterator[int]:
        return iter(self._encoded)

    def __getitem__(self, listing_id: int) -> ListingFacts:
        facts = self.get(listing_id)
        if facts is None:
            raise KeyError(listing_id)
        return facts

    def get(self, listing_id: int, *, texts: bool = True) -> ListingFacts | None:
        """The facts of a listing, or None when it is not held.

        Args:
            listing_id: the listing's id.
            texts: False leaves the long texts empty, as `for_ranking` does, but caches nothing.
        """
        encoded = self._encoded.get(listing_id)
        return None if encoded is None else facts_codec.decode(encoded, texts=texts)

    def for_ranking(self, listing_id: int) -> ListingFacts:
        """The facts of a held listing as ranking reads them: summary, description and a
        scenario's problem statement and desired outcome left empty.

        Raises:
            KeyError: the listing is not held.
        """
        facts = self._for_ranking.get(listing_id)
        if facts is not None:
            self._for_ranking.move_to_end(listing_id)
            return facts
        facts = facts_codec.decode(self._encoded[listing_id], texts=False)
        self._for_ranking[listing_id] = facts
        if len(self._for_ranking) > self.cache_size:
            self._for_ranking.popitem(last=False)
        return facts

    def put(self, facts: ListingFacts) -> None:
        """Hold a listing's facts, replacing any under its id."""
        self._encoded[facts.id] = facts_codec.encode(facts)
        self._for_ranking.pop(facts.id, None)

    def pop(self, listing_id: int) -> bool:
        """Drop a listing's facts; False when none were held."""
        self._for_ranking.pop(listing_id, None)
        return self._encoded.pop(listing_id, None) is not None

    def copy(self) -> "FactsStore":
        """An independent store of the same facts (decoded ones are shared: they are frozen)."""
        clone = FactsStore(self.cache_size)
        clone._encoded = dict(self._encoded)
        clone._for_ranking = OrderedDict(self._for_ranking)
        return clone

    def __getstate__(self) -> tuple[str, int, dict[int, bytes]]:
        return facts_codec.FORMAT, self.cache_size, self._encoded  # decoded facts are a cache

    def __setstate__(self, state: tuple[str, int, dict[int, bytes]]) -> None:
        encoding, self.cache_size, self._encoded = state
        if encoding != facts_codec.FORMAT:
            raise ValueError(f"facts encoded as {encoding}, not {facts_codec.FORMAT}")
        self._for_ranking = OrderedDict()
