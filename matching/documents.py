"""The texts that represent a listing: one to embed, one to index lexically, and its facets.

The embedding model reads only the first 256 word pieces, so the embedded text puts the dense,
descriptive fields first (kind-specific facts as words, tags, summary) and the long description
last. Titles are left out of it when there is anything else to embed: on the benchmark, titles that
are names ("dmis-lab/biobert-v1.1", "CSS10") pulled the vectors away from what the listing is
about (see benchmarks/quality.py and the matching report); the lexical text keeps them, so a search
for a name still finds it.
"""

from decimal import Decimal

from matching.facts import ComputeFacts, DatasetFacts, ListingFacts, ModelFacts, ScenarioFacts


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


def _join(parts: list[str]) -> str:
    """Join non-empty parts as sentences, without doubling a closing full stop."""
    cleaned = [part.strip() for part in parts if part and part.strip()]
    return " ".join(part if part[-1] in ".!?。！？" else f"{part}." for part in cleaned)


def semantic_text(listing: ListingFacts) -> str:
    """The text whose embedding represents the listing.

    Args:
        listing: the listing.

    Returns:
        Facts, tags, summary, scenario statements and description, in that order; the title
        alone when all of those are empty.
    """
    parts = [*fact_phrases(listing), *listing.tags, listing.summary, *_scenario_texts(listing)]
    return _join([*parts, listing.description]) or listing.title.strip()


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
