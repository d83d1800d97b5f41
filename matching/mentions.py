"""How many others name each listing by its title: a prior for the established ones.

People look for the resources others build on: a dataset that many listings name ("images from
ImageNet", "a subset of COCO") or a model many name ("fine-tuned from roberta-base") is a reference
of its field, and more often the match wanted than a lookalike nobody names (Papers with Code and
the Hugging Face Hub rank by use for the same reason). A mention is the listing's title found
verbatim in another listing's text: same case (so "AND" or "MAP" in capitals is not found in every
"and" and "map"), whole words (Chinese, written without spaces, anywhere in the text), a title of
at most `MAX_TITLE_WORDS` words and `MAX_TITLE_CJK_CHARACTERS` Chinese characters (longer titles
describe; they are not names). What counts is how many owners name a title, so that nobody raises
their own listing: an owner (an organization) naming it in many listings counts once, and never for
its own listings; a listing naming its own title names nothing.

Counting is one pass over every listing's text (`count_mentions`, about 0.05 ms a listing), so it
is repeated when the catalogue has changed enough (`MentionCounts.due`) rather than kept exact on
every write: a prior that lags a few minutes behind the catalogue ranks as well.
"""

import itertools
import math
import re
import time
from array import array
from collections.abc import Iterable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from matching.arrays import find_sorted

MAX_TITLE_WORDS = 4
MAX_TITLE_CJK_CHARACTERS = 12
# Count again once 2% of the listings changed, or an hour after any change.
RECOUNT_SHARE = 0.02
RECOUNT_SECONDS = 3600.0

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# Tokens as a name is written: a word keeps its inner dots and hyphens ("CIFAR-10", "v1.5",
# "opus-mt-en-it") but not a full stop after it ("... on ImageNet."); Chinese, written without
# spaces, is read character by character, so a Chinese name is found inside a sentence.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+(?:[.\-][^\W{_CJK}]+)*")
_CJK_CHARACTER = re.compile(rf"[{_CJK}]")
# Multiplier of the polynomial hash of a phrase: a large odd 64-bit constant.
_MIXER = np.uint64(0x9E3779B97F4A7C15)
# Texts whose tokens are hashed and looked up together.
_BATCH = 1024

Ids = npt.NDArray[np.int64]
Counts = npt.NDArray[np.int32]
Hashes = npt.NDArray[np.uint64]


def _token_hashes(text: str) -> list[int]:
    return list(map(hash, _TOKEN.findall(text)))


def _phrases_at(tokens: Hashes, starts: Ids, length: int) -> Hashes:
    """The hashes of the phrases of `length` tokens from each start (same process, same hash)."""
    phrases = tokens[starts]
    for offset in range(1, length):
        phrases = phrases * _MIXER ^ tokens[starts + offset]
    return phrases


def _title_phrase(title: str) -> tuple[int, int, int] | None:
    """A title's phrase hash, its length in tokens and its first token's hash; None for a title
    too long to be a name."""
    tokens = _TOKEN.findall(title)
    chinese = len(_CJK_CHARACTER.findall(title))
    if not tokens or chinese > MAX_TITLE_CJK_CHARACTERS or len(tokens) - chinese > MAX_TITLE_WORDS:
        return None
    hashes = np.array(list(map(hash, tokens)), dtype=np.int64).view(np.uint64)
    return (
        int(_phrases_at(hashes, np.zeros(1, np.int64), hashes.size)[0]),
        hashes.size,
        int(hashes[0]),
    )


class _Names(NamedTuple):
    """The titles to look for."""

    phrases: Hashes  # their phrase hashes, sorted
    lengths: tuple[int, ...]  # their lengths in tokens, each once
    first_tokens: Hashes  # their first tokens' hashes, sorted


def is_name(title: str) -> bool:
    """Whether a title is short enough to be counted when named: at most `MAX_TITLE_WORDS`
    words and `MAX_TITLE_CJK_CHARACTERS` Chinese characters, and not empty."""
    return _title_phrase(title) is not None


def count_mentions(
    titles: Iterable[str], texts: Iterable[str], owners: npt.ArrayLike | None = None
) -> Counts:
    """For each listing, how many owners other than its own name its title (see the module).

    Both are read once, titles first, so that a caller can stream them from storage.

    Args:
        titles: each listing's title.
        texts: each listing's text, in the same order (the title may be part of it).
        owners: each listing's owner as a non-negative integer (e.g. its organization), in
            the same order: an owner naming a title in many listings counts once, and never
            for its own listings. None: every listing is its own owner.

    Returns:
        The counts, in the listings' order.

    Raises:
        ValueError: there are not as many texts, or owners, as titles.
    """
    # C arrays, not lists: a list of a million titles' tuples would take ~150 MB.
    hashes, lengths, firsts = array("Q"), array("B"), array("Q")
    for title in titles:
        phrase = _title_phrase(title)
        hashes.append(phrase[0] if phrase else 0)
        lengths.append(phrase[1] if phrase else 0)  # 0: not a name
        if phrase:
            firsts.append(phrase[2])
    own = np.frombuffer(hashes, dtype=np.uint64)
    owner = np.arange(own.size) if owners is None else np.asarray(owners, dtype=np.int64)
    if owner.shape != own.shape:
        raise ValueError(f"{owner.size} owners for {own.size} titles")
    titled = np.frombuffer(lengths, dtype=np.uint8) > 0
    known = np.unique(own[titled])
    names = _Names(
        known,
        tuple(np.unique(np.frombuffer(lengths, dtype=np.uint8)[titled]).tolist()),
        np.unique(np.frombuffer(firsts, dtype=np.uint64)),
    )
    own_slot = np.full(own.size, known.size, dtype=np.int64)  # past the end: no title
    own_slot[titled] = np.searchsorted(known, own[titled])
    owners_past = int(owner.max(initial=-1)) + 1
    found: list[Ids] = []  # slot * owners_past + owner: each owner naming each title, once
    read, stream = 0, iter(texts)
    while batch := list(itertools.islice(stream, _BATCH)):
        if read + len(batch) <= own.size and known.size:
            texts_at, slots = _named_in(batch, names)
            at = read + texts_at
            others = slots != own_slot[at]  # a listing naming its own title names itself
            found.append(np.unique(slots[others] * owners_past + owner[at[others]]))
        read += len(batch)
    if read != own.size:
        raise ValueError(f"{read} texts for {own.size} titles")
    pairs = np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)
    named = np.bincount(pairs // owners_past, minlength=known.size + 1).astype(np.int32)
    named[known.size] = 0
    counts = named[own_slot]
    # A listing's own owner naming its title does not count for it.
    _, named_by_own = find_sorted(pairs, own_slot * owners_past + owner)
    counts -= (titled & named_by_own).astype(np.int32)
    return counts


def _named_in(texts: list[str], names: _Names) -> tuple[Ids, Ids]:
    """Which texts name which titles: (text position, slot in `names.phrases`) pairs."""
    hashed = [_token_hashes(text) for text in texts]
    sizes = np.fromiter(map(len, hashed), dtype=np.int64, count=len(hashed))
    flat = itertools.chain.from_iterable(hashed)
    tokens = np.fromiter(flat, np.int64, int(sizes.sum())).view(np.uint64)
    text_of = np.repeat(np.arange(len(texts)), sizes)
    # Phrases are hashed only where a title could start: at tokens that begin one.
    starts = np.flatnonzero(find_sorted(names.first_tokens, tokens)[1])
    known = names.phrases
    texts_at, slots = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for length in names.lengths:
        begin = starts[starts + length <= tokens.size]
        begin = begin[text_of[begin] == text_of[begin + length - 1]]  # within one text
        runs = _phrases_at(tokens, begin, length)
        slot, hit = find_sorted(known, runs)
        texts_at.append(text_of[begin[hit]])
        slots.append(slot[hit])
    return np.concatenate(texts_at), np.concatenate(slots)


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
