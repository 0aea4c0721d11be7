"""A URL as a message shows it: without its password, wherever the URL carries one (after the user,
``postgresql://user:***@host/db``, or as libpq's ``password`` query parameter, ``?password=***``)."""

from __future__ import annotations

HIDDEN = "***"


def shown_url(url: str) -> str:
    """``url`` with every password it carries hidden; a text SQLAlchemy cannot read as a URL (it
    names no ``scheme://``, so it holds no password field) is shown as it is."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 (only to word a message)
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": HIDDEN})
    return parsed.render_as_string(hide_password=True).replace("%2A%2A%2A", HIDDEN)
