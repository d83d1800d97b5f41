"""The matcher's listing facts, kept encoded and decoded when a query reaches them.

As Python objects, the facts of 100,000 listings (texts, tuples, dates, decimals: about ten
objects each) take 1.5-3 s to unpickle from a snapshot, most of a restart. Kept as one pickled
`bytes` per listing they load in 0.05 s; a query decodes only its candidates (about 7 us each),
and the most recently used stay decoded.
"""

import pickle
from collections import OrderedDict
from collections.abc import Iterator

from matching.facts import ListingFacts

DEFAULT_CACHE_SIZE = 50_000


class FactsStore:
    """Listing facts by id: a mapping that stores each value pickled.

    Args:
        cache_size: how many decoded facts to keep, least recently used dropped first.
    """

    def __init__(self, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.cache_size = cache_size
        self._encoded: dict[int, bytes] = {}
        self._decoded: OrderedDict[int, ListingFacts] = OrderedDict()

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

    def get(self, listing_id: int) -> ListingFacts | None:
        """The facts of a listing, or None when it is not held."""
        facts = self._decoded.get(listing_id)
        if facts is not None:
            self._decoded.move_to_end(listing_id)
            return facts
        encoded = self._encoded.get(listing_id)
        if encoded is None:
            return None
        facts = pickle.loads(encoded)
        self._remember(listing_id, facts)
        return facts

    def put(self, facts: ListingFacts) -> None:
        """Hold a listing's facts, replacing any under its id."""
        self._encoded[facts.id] = pickle.dumps(facts, pickle.HIGHEST_PROTOCOL)
        self._decoded.pop(facts.id, None)
        self._remember(facts.id, facts)

    def pop(self, listing_id: int) -> bool:
        """Drop a listing's facts; False when none were held."""
        self._decoded.pop(listing_id, None)
        return self._encoded.pop(listing_id, None) is not None

    def copy(self) -> "FactsStore":
        """An independent store of the same facts (decoded ones are shared: they are frozen)."""
        clone = FactsStore(self.cache_size)
        clone._encoded = dict(self._encoded)
        clone._decoded = OrderedDict(self._decoded)
        return clone

    def __getstate__(self) -> tuple[int, dict[int, bytes]]:
        return self.cache_size, self._encoded  # decoded facts are a cache

    def __setstate__(self, state: tuple[int, dict[int, bytes]]) -> None:
        self.cache_size, self._encoded = state
        self._decoded = OrderedDict()

    def _remember(self, listing_id: int, facts: ListingFacts) -> None:
        self._decoded[listing_id] = facts
        if len(self._decoded) > self.cache_size:
            self._decoded.popitem(last=False)
