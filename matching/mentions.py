"""How many listings name each listing by its title: a prior for the established ones.

People look for the resources others build on: a dataset that many listings name ("images from
ImageNet", "a subset of COCO") or a model many name ("fine-tuned from roberta-base") is a reference
of its field, and more often the match wanted than a lookalike nobody names (Papers with Code and
the Hugging Face Hub rank by use for the same reason). A mention is the listing's title found
verbatim in another listing's text: same case (so "AND" or "MAP" in capitals is not found in every
"and" and "map"), whole words, a title of at most `MAX_TITLE_WORDS` words (longer titles describe;
they are not names). A listing that names itself, or names a title twice, counts once or not at all.

Counting is one pass over every listing's text (`count_mentions`, about 0.1 ms a listing), so it
is repeated when the catalogue has changed enough (`MentionCounts.due`) rather than kept exact on
every write: a prior that lags a few minutes behind the catalogue ranks as well.
"""

import math
import re
import time
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

MAX_TITLE_WORDS = 4
# Words as a name is written: "CIFAR-10", "v1.5" and "opus-mt-en-it" stay whole, and a full stop
# after a word ends it ("... on ImageNet.").
_WORD = re.compile(r"\w(?:[\w.\-]*\w)?")
# Multiplier of the polynomial hash of a phrase: a large odd 64-bit constant.
_MIXER = np.uint64(0x9E3779B97F4A7C15)
# Count again once 2% of the listings changed, or an hour after any change.
RECOUNT_SHARE = 0.02
RECOUNT_SECONDS = 3600.0

Ids = npt.NDArray[np.int64]
Counts = npt.NDArray[np.int32]
Hashes = npt.NDArray[np.uint64]


def _word_hashes(text: str) -> Hashes:
    words = _WORD.findall(text)
    return np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)


def _phrase_hashes(words: Hashes, length: int) -> Hashes:
    """The hash of every run of `length` consecutive words (same process, same hash)."""
    runs = words[: words.size - length + 1].copy()
    for offset in range(1, length):
        runs *= _MIXER
        runs ^= words[offset : words.size - length + 1 + offset]
    return runs


def title_hash(title: str) -> int | None:
    """The hash a mention of this title has, or None for a title too long (or empty) to be named.

    Args:
        title: a listing's title.
    """
    words = _word_hashes(title)
    if not 0 < words.size <= MAX_TITLE_WORDS:
        return None
    return int(_phrase_hashes(words, words.size)[0])


def count_mentions(titles: Iterable[str], texts: Iterable[str]) -> Counts:
    """For each listing, how many of the others contain its title (see the module).

    Both are read once, titles first, so that a caller can stream them from storage.

    Args:
        titles: each listing's title.
        texts: each listing's text, in the same order (the title may be part of it).

    Returns:
        The counts, in the listings' order.

    Raises:
        ValueError: there are not as many texts as titles.
    """
    own = np.fromiter(
        (h if (h := title_hash(title)) is not None else 0 for title in titles), dtype=np.uint64
    )
    titled = own != 0  # a hash of 0 stands for no title; a real one is 0 once in 2**64
    known = np.unique(own[titled])
    slot_of_own = np.full(own.size, known.size, dtype=np.int64)  # past the end: no title
    slot_of_own[titled] = np.searchsorted(known, own[titled])
    named = np.zeros(known.size + 1, dtype=np.int32)
    read = 0
    for at, text in enumerate(texts):
        read += 1
        if at >= own.size:
            break
        words = _word_hashes(text)
        longest = min(MAX_TITLE_WORDS, words.size)
        if longest == 0 or known.size == 0:
            continue
        runs = [_phrase_hashes(words, length) for length in range(1, longest + 1)]
        phrases = np.unique(np.concatenate(runs))
        slots = np.searchsorted(known, phrases)
        inside = slots < known.size
        slots = slots[inside]
        slots = slots[known[slots] == phrases[inside]]
        named[slots[slots != slot_of_own[at]]] += 1
    if read != own.size:
        raise ValueError(f"{read} texts for {own.size} titles")
    named[known.size] = 0
    return named[slot_of_own]


class MentionCounts:
    """Each held listing's mention count, by id, and whether counting again is due.

    Counts lag behind writes on purpose (see the module): `due` says when enough has changed
    since the last count, and the holder counts again with `count_mentions` and `replace`.

    Args:
        share: count again once this share of the listings has changed (at least one).
        seconds: or once this long has passed with any change since.
    """

    def __init__(self, share: float = RECOUNT_SHARE, seconds: float = RECOUNT_SECONDS) -> None:
        self.share = share
        self.seconds = seconds
        self._counts: Counts = np.zeros(0, dtype=np.int32)
        self._changed = 0
        self._counted_at = time.monotonic()

    def of(self, ids: Ids) -> Counts:
        """The counts of these ids (0 for an id never counted)."""
        inside = ids < self._counts.size
        counts = np.zeros(ids.size, dtype=np.int32)
        counts[inside] = self._counts[ids[inside]]
        return counts

    def changed(self, listings: int) -> None:
        """Note that this many listings were added, changed or removed."""
        self._changed += listings

    def due(self, held: int) -> bool:
        """Whether to count again, for a matcher holding `held` listings."""
        if self._changed == 0:
            return False
        waited = time.monotonic() - self._counted_at >= self.seconds
        return waited or self._changed >= max(1, math.ceil(self.share * held))

    def start(self) -> None:
        """Mark the start of a count: changes from now on make the next one due."""
        self._changed = 0
        self._counted_at = time.monotonic()

    def replace(self, ids: Ids, counts: Counts) -> None:
        """Hold these counts, and 0 for every other id."""
        size = int(ids.max()) + 1 if ids.size else 0
        fresh = np.zeros(size, dtype=np.int32)
        fresh[ids] = counts
        self._counts = fresh

    def __getstate__(self) -> tuple[float, float, Counts, int]:
        return self.share, self.seconds, self._counts, self._changed

    def __setstate__(self, state: tuple[float, float, Counts, int]) -> None:
        self.share, self.seconds, self._counts, self._changed = state
        self._counted_at = time.monotonic()
