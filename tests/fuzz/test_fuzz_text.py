"""Fuzz the text parsers: transport URIs (both roles) and ``-f`` filter specifications.

Property: any string gives a parsed value or an OccystrapError (a UsageError for the CLI to
print as one line), never another exception.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from occystrap import transports
from occystrap.filters.catalog import parse_filter

from .seeds import FUZZ, only_occystrap_errors, seed_lines

URIS = seed_lines("uri")
FILTERS = seed_lines("filter")
_SPECIAL = "://?&=,:%#@[]/\\.*+()^$|{}\0\n \t\udcff\u00e9"


def _spliced(seeds: list[str]) -> st.SearchStrategy[str]:
    """A seed with a slice replaced by characters that matter to the parsers."""
    junk = st.text(alphabet=st.sampled_from(_SPECIAL) | st.characters(), max_size=12)
    return st.builds(
        lambda s, i, j, t: s[: i % (len(s) + 1)] + t + s[j % (len(s) + 1) :],
        st.sampled_from(seeds),
        st.integers(0, 200),
        st.integers(0, 200),
        junk,
    )


def parse_uri(text: str) -> None:
    for role in ("source", "destination"):
        try:
            endpoint = transports.parse(text, role)
        except Exception as e:
            from occystrap.errors import OccystrapError

            if not isinstance(e, OccystrapError):
                raise
            continue
        _ = endpoint.options, endpoint.target


@pytest.mark.parametrize("text", URIS + FILTERS)
def test_seeds_parse(text: str) -> None:
    if text in URIS:
        parse_uri(text)
    else:
        only_occystrap_errors(lambda: parse_filter(text))


@FUZZ
@given(st.one_of(_spliced(URIS), st.text(max_size=40)))
def test_uri_parse(text: str) -> None:
    parse_uri(text)


@FUZZ
@given(st.one_of(_spliced(FILTERS), st.text(max_size=40)))
def test_filter_parse(text: str) -> None:
    only_occystrap_errors(lambda: parse_filter(text))
