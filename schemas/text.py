"""Free-text field types. NUL is refused: PostgreSQL cannot store it in text columns."""

from typing import Annotated

from pydantic import AfterValidator, StringConstraints


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Title = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=3, max_length=200),
    AfterValidator(no_nul),
]
ShortText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_nul),
]
Paragraph = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=2_000), AfterValidator(no_nul)
]
LongText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=5_000), AfterValidator(no_nul)
]
Markdown = Annotated[str, StringConstraints(max_length=20_000), AfterValidator(no_nul)]
