"""The texts that represent a listing: one to embed, one to index lexically, and its facets.

The embedding model reads only the first 256 word pieces, so the embedded text puts the dense,
descriptive fields first (kind-specific facts as words, tags, summary) and the long description
last. Titles are left out of it when there is anything else to embed: on the benchmark, titles that
are names ("dmis-lab/biobert-v1.1", "CSS10") pulled the vectors away from what the listing is
about (see benchmarks/quality.py and the matching report); the lexical text keeps them, so a search
for a name still finds it.

The embedded text is built from the listing's sentences (summary, scenario statements,
description), and knows where each sits in it: the pass that embeds the text also gives each
sentence a vector (late chunking), which explains a match without embedding anything at query time.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from matching.facts import ComputeFacts, DatasetFacts, ListingFacts, ModelFacts, ScenarioFacts
from matching.text import split_sentences


def _words(code: str) -> str:
    """A snake_case or kebab-case code as words: "time_series_forecasting" -> "time series ..."."""
    return code.replace("_", " ").replace("-", " ")


def _amount(value: float | Decimal) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value.normalize():f}"


def fact_phrases(listing: ListingFacts) -> list[str]:
    """The kind-specific facts that say what a listing is about, as short phrases.

    Args:
        listing: the listing.

    Returns:
        Phrases such as "sentence similarity", "image data", "8 × NVIDIA H100 80 GB"; empty
        when the listing states no such facts.
    """
    facts = listing.attributes
    phrases: list[str] = []
    if isinstance(facts, ModelFacts):
        phrases += [_words(task) for task in facts.tasks]
        if facts.modality:
            phrases.append(f"{_words(facts.modality)} model")
    elif isinstance(facts, DatasetFacts):
        if facts.modality:
            phrases.append(f"{_words(facts.modality)} data")
    elif isinstance(facts, ScenarioFacts):
        phrases += [_words(task) for task in facts.required_capabilities]
    elif isinstance(facts, ComputeFacts):
        vendor, model = facts.accelerator_vendor or "", facts.accelerator_model or ""
        named = vendor and model.casefold().startswith(vendor.casefold())
        accelerator = model if named else f"{vendor} {model}".strip()
        if accelerator:
            count = f"{facts.accelerator_count} × " if facts.accelerator_count else ""
            memory = facts.memory_per_accelerator_gb
            size = f" {_amount(memory)} GB" if memory else ""
            phrases.append(f"{count}{accelerator}{size}")
        phrases += list(facts.certifications)
    return phrases


def _scenario_texts(listing: ListingFacts) -> list[str]:
    facts = listing.attributes
    if isinstance(facts, ScenarioFacts):
        return [facts.problem_statement, facts.desired_outcome]
    return []


def _as_sentence(part: str) -> str:
    """A part followed by a full stop unless it ends with one of its own."""
    return part if part[-1] in ".!?。！？" else f"{part}."


def _join(parts: list[str]) -> str:
    """Join non-empty parts as sentences, without doubling a closing full stop."""
    return " ".join(_as_sentence(part.strip()) for part in parts if part and part.strip())


@dataclass(frozen=True, slots=True)
class SemanticDocument:
    """The text embedded for a listing, and its sentences with where each sits in the text.

    Attributes:
        text: the text to embed.
        sentences: the summary's, scenario statements' and description's sentences, in order.
        spans: (start, end) character offsets of each sentence in `text`.
    """

    text: str
    sentences: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]


def semantic_document(listing: ListingFacts) -> SemanticDocument:
    """The text whose embedding represents the listing, with its sentences located in it.

    Args:
        listing: the listing.

    Returns:
        Facts and tags, then the sentences of the summary, scenario statements and description,
        in that order; the title alone (and no sentences) when all of those are empty.
    """
    lead = _join([*fact_phrases(listing), *listing.tags])
    sentences = list(document_sentences(listing))
    pieces, spans, cursor = [lead] if lead else [], [], len(lead)
    for sentence in sentences:
        start = cursor + (1 if pieces else 0)
        spans.append((start, start + len(sentence)))
        piece = _as_sentence(sentence)
        pieces.append(piece)
        cursor = start + len(piece)
    text = " ".join(pieces) or listing.title.strip()
    return SemanticDocument(text, tuple(sentences), tuple(spans))


def document_sentences(listing: ListingFacts) -> Iterator[str]:
    """The sentences of a listing's semantic document, in order, split part by part as they are
    read (evidence usually needs only the first few: the description's are split last).

    Args:
        listing: the listing.

    Returns:
        The sentences of the summary, the scenario statements and the description.
    """
    for part in (listing.summary, *_scenario_texts(listing), listing.description):
        yield from split_sentences(part)


def semantic_text(listing: ListingFacts) -> str:
    """The text whose embedding represents the listing (see `semantic_document`)."""
    return semantic_document(listing).text


def lexical_text(listing: ListingFacts) -> str:
    """The text the lexical index holds for the listing.

    Args:
        listing: the listing.

    Returns:
        Title, tags, facts, summary, scenario statements and description.
    """
    parts = [listing.title, *listing.tags, *fact_phrases(listing), listing.summary]
    return _join([*parts, *_scenario_texts(listing), listing.description])


def facets(listing: ListingFacts) -> tuple[str, ...]:
    """The tasks a listing is about, as codes shared by scenarios and models.

    Ranking smooths scores over candidates that share a facet (models doing the same task).

    Args:
        listing: the listing.

    Returns:
        A model's tasks or a scenario's required capabilities; empty for other kinds and where
        the facts are not given.
    """
    facts = listing.attributes
    if isinstance(facts, ModelFacts):
        return facts.tasks
    if isinstance(facts, ScenarioFacts):
        return facts.required_capabilities
    return ()
