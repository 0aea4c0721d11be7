"""A URL as a message shows it: without its password, wherever the URL carries one (after the user,
``postgresql://user:***@host/db``, or as libpq's ``password`` query parameter, ``?password=***``)."""

from __future__ import annotations

import re

HIDDEN = "***"
_USER_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")
_PASSWORD_PARAMETER = re.compile(r"([?&]password=)[^&]*")


def shown_url(url: str) -> str:
    """``url`` with every password it carries hidden, read as SQLAlchemy reads it; a text it cannot read
    has what looks like a password (``://user:…@``, ``password=…``) hidden all the same."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (only to word a message)
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    # not read as a URL (a port that is no number): hide what looks like one all the same
    except (ArgumentError, ValueError):
        return _PASSWORD_PARAMETER.sub(rf"\1{HIDDEN}", _USER_PASSWORD.sub(rf"\1{HIDDEN}@", url))
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": HIDDEN})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)
