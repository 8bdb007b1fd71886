"""The server-side listing index (docs/design-listing.md): listings that live in JetStream, not in each process."""

from __future__ import annotations

import re

from natsstorage.names import index_token, index_tokens

TRICKY_SEGMENTS = ["", "a", "A", "a.b", "*", ">", "~", "~~", "~7E", "~x", "é", "été", "a b", "a\tb", "-_", "x" * 300]
TOKEN = re.compile(r"^(~|(?:[A-Za-z0-9_-]|~[0-9A-F]{2})+)$")


def test_index_tokens_escape_each_segment_into_one_literal_token():
    assert index_tokens("photos/cat.jpg") == ["photos", "cat~2Ejpg"]
    assert index_tokens("été") == ["~C3~A9t~C3~A9"]
    assert index_tokens("*/>/~tmp") == ["~2A", "~3E", "~7Etmp"]
    assert index_tokens("a//b") == ["a", "~", "b"]
    assert index_tokens("lone\udc80") == ["lone~ED~B2~80"]  # a lone surrogate a JSON name may carry


def test_index_tokens_are_injective_and_valid_subject_tokens():
    tokens = [index_token(segment) for segment in TRICKY_SEGMENTS]
    assert len(set(tokens)) == len(TRICKY_SEGMENTS)
    for token in tokens:
        assert TOKEN.match(token), token
        assert "~~" not in token and "." not in token and token not in ("*", ">")
