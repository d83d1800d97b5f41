"""Tokens for lexical matching: English words and Chinese words, in one vocabulary.

CJK runs are segmented with jieba in search mode (a long word also yields the shorter words inside
it, so a query for 交通 finds a listing about 交通流量); other text is split into letters-and-digits
words. Everything is NFKC-normalised and lowercased, common function words are dropped and English
words get a light suffix stemming, so "datasets" finds "dataset".
"""

import logging
import re
import threading
import unicodedata
import warnings
from collections.abc import Iterator
from types import ModuleType

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_WORD = re.compile(r"[^\W_]+")
# Sentence ends: English punctuation before a space, Chinese punctuation anywhere.
_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|(?<=[。！？；])")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
# Markdown: headings and list markers start a new paragraph; bold and code marks are dropped.
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:\s.*)?$", re.MULTILINE)
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d{1,3}[.)])\s+", re.MULTILINE)
_MARKS = re.compile(r"\*\*|__|`")

_ENGLISH_STOP_WORDS = """
a an the of for to in on and or with by is are be was were been being we i you he she they our your
their its my me us them this that these those it as at from into onto over under about can could
will would should may might must shall do does did has have had not no nor so than too very just
also such which what who whom whose when where why how all any both each few more most other some
own same only then there here if but because while until against between through during before
after above below up down out off again further once want need needs build use using used based
"""
_CHINESE_STOP_WORDS = """
的 了 和 与 及 或 是 在 有 为 对 将 把 被 从 以 等 中 上 下 这 那 其 之 也 都 而 并
我们 我 你 他 她 它 一个 进行 可以 需要 用于 通过
"""
ENGLISH_STOP_WORDS = frozenset(_ENGLISH_STOP_WORDS.split())
CHINESE_STOP_WORDS = frozenset(_CHINESE_STOP_WORDS.split())

_jieba: ModuleType | None = None
_jieba_lock = threading.Lock()


def load_chinese_segmenter() -> None:
    """Load jieba's dictionary now (~0.7 s, holding the GIL) rather than in the first Chinese
    text tokenized, e.g. in a background thread at a service's start."""
    _segmenter()


def _segmenter() -> ModuleType:
    """Import and initialise jieba once, without its log lines or import-time warnings."""
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            with warnings.catch_warnings():
                # jieba 0.42 has invalid escape sequences and optional pkg_resources use.
                warnings.simplefilter("ignore")
                import jieba

                jieba.setLogLevel(logging.WARNING)
                jieba.initialize()
            _jieba = jieba
    return _jieba


def stem(word: str) -> str:
    """Strip the English plural from a lowercase word.

    A light stemmer on purpose: it conflates "datasets"/"dataset", "queries"/"query" and
    "boxes"/"box" but leaves short words, "-ss"/"-us"/"-is" endings and non-alphabetic tokens alone.

    Args:
        word: a lowercase token.

    Returns:
        The stemmed token (the word itself when no rule applies).
    """
    if len(word) <= 3 or not word.isascii() or not word.isalpha():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")) or not word.endswith("s"):
        return word
    return word[:-1]


def _english_tokens(text: str) -> Iterator[str]:
    for word in _WORD.findall(text):
        if word not in ENGLISH_STOP_WORDS:
            yield stem(word)


def _chinese_tokens(run: str) -> Iterator[str]:
    for word in _segmenter().cut_for_search(run):
        if word not in CHINESE_STOP_WORDS:
            yield word


def tokenize(text: str) -> list[str]:
    """Split a text into normalised tokens for lexical indexing and querying.

    Args:
        text: English, Chinese or mixed text.

    Returns:
        Tokens in text order, with repeats (term frequencies matter to BM25).
    """
    normalised = unicodedata.normalize("NFKC", text).lower()
    tokens: list[str] = []
    position = 0
    for run in _CJK_RUN.finditer(normalised):
        tokens.extend(_english_tokens(normalised[position : run.start()]))
        tokens.extend(_chinese_tokens(run.group()))
        position = run.end()
    tokens.extend(_english_tokens(normalised[position:]))
    return tokens


def cjk_share(text: str) -> float:
    """The share of CJK characters among a text's letters and digits.

    Args:
        text: any text.

    Returns:
        A value in [0, 1]; 0 for a text without letters.
    """
    # Counted by regular expressions, not character by character: a listing matched against
    # the others is a query of thousands of characters. _WORD's characters are str.isalnum's.
    letters = sum(map(len, _WORD.findall(text)))
    if not letters:
        return 0.0
    return sum(c.isalnum() for run in _CJK_RUN.findall(text) for c in run) / letters


def split_sentences(text: str) -> list[str]:
    """Split a plain or Markdown text into sentences.

    Headings are dropped, each list item and paragraph is split on its own, wrapped lines are
    joined, and bold and code marks are removed.

    Args:
        text: the text to split (English, Chinese or mixed).

    Returns:
        The non-empty sentences, whitespace collapsed, in order.
    """
    text = _MARKS.sub("", _LIST_MARKER.sub("\n\n", _HEADING.sub("\n\n", text)))
    sentences = []
    for paragraph in _PARAGRAPH_BREAK.split(text):
        joined = " ".join(paragraph.split())
        sentences += [part.strip() for part in _SENTENCE_END.split(joined) if part.strip()]
    return sentences
