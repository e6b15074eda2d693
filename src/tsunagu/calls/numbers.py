"""Telephone numbers: Japanese national form (03…, 050…, 0120…) and E.164 (+81…).

Carriers differ in what they send and expect: one delivers ``0312345678`` in the
Request-URI, another ``+81312345678``, a third ``81312345678``. Tsunagu keys numbers by
their E.164 form internally and renders them in whichever form a trunk wants
(ITU-T E.164; Japan's national significant number drops the trunk prefix 0).
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\s\-().]")
_DIGITS = re.compile(r"\+?[0-9]+")


class NumberError(ValueError):
    """Not something we can read as a phone number."""


def clean(number: str) -> str:
    """Drop a ``tel:``/``sip:`` prefix, URI parameters and visual separators."""
    text = number.strip()
    for prefix in ("tel:", "sip:", "sips:"):
        if text.lower().startswith(prefix):
            text = text[len(prefix) :]
    text = text.split(";", 1)[0].split("@", 1)[0]
    text = _SEPARATORS.sub("", text)
    if not _DIGITS.fullmatch(text):
        raise NumberError(f"{number!r} is not a phone number (digits, optionally a leading +)")
    return text


def to_e164(number: str, country_code: str = "81") -> str:
    """``0312345678`` → ``+81312345678``; ``+81…`` stays; ``81…`` (no plus) gains one.

    Numbers too short to be subscriber numbers (extensions such as ``1001``) are returned
    unchanged: they are internal.
    """
    text = clean(number)
    if text.startswith("+"):
        return text
    if text.startswith("00"):  # international prefix from Japan (and most countries)
        return "+" + text[2:]
    if text.startswith("0") and len(text) >= 10:
        return f"+{country_code}{text[1:]}"
    if text.startswith(country_code) and len(text) >= 11:
        return "+" + text
    return text


def to_national(number: str, country_code: str = "81") -> str:
    """``+81312345678`` → ``0312345678``; numbers of other countries keep their ``+``."""
    e164 = to_e164(number, country_code)
    if e164.startswith(f"+{country_code}"):
        return "0" + e164[1 + len(country_code) :]
    return e164


def same_number(a: str, b: str, country_code: str = "81") -> bool:
    try:
        return to_e164(a, country_code) == to_e164(b, country_code)
    except NumberError:
        return False


def is_toll_free(number: str) -> bool:
    """0120/0800 free dial and 0570 navi-dial (REQUIREMENTS §2: re-pointed at DR)."""
    national = to_national(number)
    return national.startswith(("0120", "0800", "0570"))
