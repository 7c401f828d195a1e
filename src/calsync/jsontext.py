"""JSON text made the way json.dumps makes it, without json.dumps' per-call set-up.

Why: an initial sync encodes four or five small values per event (the content hash's body, the
stored attendees, extra, conference, the journal's field names). json.dumps builds a JSONEncoder's
C encoder anew on every call, which costs more than encoding a small value; here each encoder is
built once. The text is byte for byte json.dumps' with the same options (tests/test_page_cost.py),
so stored columns and content hashes do not change. Circular values are not checked for (none of
these values can be circular: they come from JSON or from plain dataclass fields).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _encoder
from typing import Any


def _made(*, sort_keys: bool, separators: tuple[str, str]) -> Callable[[Any], str]:
    options = json.JSONEncoder(sort_keys=sort_keys, separators=separators, check_circular=False)
    make = getattr(_encoder, "c_make_encoder", None)  # (not in typeshed's stub)
    if make is None:  # an interpreter without the C accelerator: the standard path
        return options.encode
    item_separator, key_separator = separators
    encode: Callable[[Any, int], list[str]] = make(
        None,  # markers: no circularity check
        options.default,
        _encoder.encode_basestring_ascii,
        None,  # indent
        key_separator,
        item_separator,
        sort_keys,
        False,  # skipkeys
        True,  # allow_nan
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


# json.dumps(value): what SQLAlchemy's JSON type stores (it calls json.dumps with no options)
dumps = _made(sort_keys=False, separators=(", ", ": "))
# json.dumps(value, sort_keys=True, separators=(",", ":")): one text per value, for hashing
canonical_dumps = _made(sort_keys=True, separators=(",", ":"))
