"""The rules of a move of ``champion``, the same on both backends.

Moves of one model are serialized, whoever makes them (publications of several DAG runs,
people promoting, on any machine): MLflow's tags have no compare-and-set, so each move
(settle an interrupted one, read the history and the champion, write the intent, move the
alias, record) runs under a lock of the model, :func:`champion_lock`, a leased object of
the artifact store (:mod:`recflow.core.locks`), which the SageMaker backend takes too. A
publication moves ``champion`` only if it still is the version it expected (the one the
gate compared the challenger against, :func:`publish_evaluated`; else the one when the
publication began): if someone moved it since, the version is registered and the alias
stays (``champion_not_moved`` says who moved it). A person's promotion always moves it, and is
recorded ``by_hand``; a version a person moved ``champion`` off (a rollback, or a promotion of another
version by hand) is made champion again only by a person (:func:`moved_off_by_hand`), never by a
publication of its training job from a later DAG run.
A recorded move is never overwritten.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from recflow.core.artifacts import join
from recflow.core.config import Settings
from recflow.core.errors import RegistryError
from recflow.core.locks import Lease, LockLost, LockTimeout, lease
from recflow.registry.model import AT_START, PUBLISH_STEPS, ExpectedChampion, OnStep

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _skip_champion_steps(step: OnStep) -> None:
    for skipped in PUBLISH_STEPS[PUBLISH_STEPS.index("champion_intent") :]:
        step(skipped)


LOCKS = ("registry", "locks")
"""Under the artifact root: ``registry/locks/<name>``, the lock of each model's champion moves."""


@contextmanager
def champion_lock(settings: Settings, name: str, who: str) -> Iterator[Lease]:
    """Hold the lock of ``name``'s champion moves for the block (both backends take it).

    ``registry/locks/<name>`` under the artifact root, a lease of :data:`recflow.core.locks.LEASE_SECONDS`
    (a holder that crashed blocks moves that long at most) waited for up to
    :data:`recflow.core.locks.WAIT_SECONDS`. :class:`RegistryError` when it cannot be had in time (naming
    its holder), or when this holder's lease ran out and another took the lock before a write.
    """
    uri = join(settings.artifacts_uri, *LOCKS, quote(name, safe=""))
    with ExitStack() as stack:
        try:
            held = stack.enter_context(lease(settings, uri, f"{who}, moving the champion of {name}"))
        except LockTimeout as exc:
            raise RegistryError(
                f"the champion of {name} cannot be moved now: another move holds its lock. {exc}"
            ) from exc
        try:
            yield held
        except LockLost as exc:
            raise RegistryError(
                f"moving the champion of {name} took longer than its lock's lease: {exc}. Nothing more "
                "was written; check the champion and its history, then retry"
            ) from exc


def champion_moved_since(
    history: Sequence[Mapping[str, Any]], current: int | None, version: int, expected: int | None
) -> str:
    """Why a publication of ``version`` expecting ``expected`` as champion must leave it alone, or ``""``
    when it may move it: the champion still is ``expected``, or already is ``version``."""
    if current in (expected, version):
        return ""
    last = history[-1] if history and history[-1]["version"] == current else None
    by = (
        f"moved by {last['who']} at move {last['seq']} ({last['at']}: {last['reason']})"
        if last is not None
        else "moved outside recflow (no recorded move put it there)"
    )
    return (
        f"champion is version {current}, {by}, since the evaluation compared against "
        f"{'no champion' if expected is None else f'version {expected}'}; version {version} not promoted"
    )


def moved_off_by_hand(history: Sequence[Mapping[str, Any]], name: str, version: int) -> str:
    """Why a publication must not make ``version`` champion again, or ``""``: the last move that took
    ``champion`` off it was a person's (``by_hand``; moves recorded before that key existed count as
    publications). Once a later move takes ``champion`` off it again without a person (it was made
    champion by hand, then a publication replaced it), publications may move it back."""
    away = [e for e in history if e.get("previous_version") == version]
    last = away[-1] if away else None
    if last is None or not last.get("by_hand"):
        return ""
    return (
        f"version {version} was moved off champion by hand by {last['who']} at move {last['seq']} "
        f"({last['at']}: {last['reason']}); a publication does not make it champion again, a person "
        f"does: recflow models promote --name {name} --version {version} --reason TEXT"
    )


def next_champion_move(
    history: Sequence[Mapping[str, Any]],
    current: int | None,
    version: int,
    *,
    name: str,
    who: str,
    reason: str,
    by_hand: bool,
    step: OnStep,
    expected: ExpectedChampion = AT_START,
) -> tuple[dict[str, Any] | None, str]:
    """The move of ``champion`` to ``version`` to record next (its ``seq`` follows ``history``), or
    ``None`` when there is none to make, with why when that is news: the champion is not ``expected``
    (a publication's compare-and-set, :func:`champion_moved_since`; ``AT_START``: no check), or a
    person moved ``champion`` off ``version`` (:func:`moved_off_by_hand`: a publication from a later
    DAG run of the same training job), or ``version`` already is champion, or, for a publication (not
    ``by_hand``), ``who`` already moved it there once, so a retried publication never undoes a later
    rollback. The champion steps of :data:`PUBLISH_STEPS` are
    reported done when nothing moves. Called under the model's lock (:func:`champion_lock`)."""
    not_moved = "" if expected is AT_START else champion_moved_since(history, current, version, expected)
    retried = not by_hand and any(e["version"] == version and e["who"] == who for e in history)
    if not (not_moved or by_hand or retried or current == version):
        not_moved = moved_off_by_hand(history, name, version)
    if not_moved or current == version or retried:
        _skip_champion_steps(step)
        return None, not_moved
    move: dict[str, Any] = {
        "seq": (int(history[-1]["seq"]) if history else 0) + 1,
        "version": version,
        "previous_version": current,
        "who": who,
        "at": _now(),
        "reason": reason,
    }
    if by_hand:
        move["by_hand"] = True
    return move, ""


NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp"})
"""Unicode's control characters (a line break, a tab, an escape) and line and paragraph separators; a
no-break space, a soft hyphen or an emoji's joiner are a sentence's."""
REASON_MAX_CHARS = 500
"""The longest reason a move by hand records: a sentence and a ticket, one line of the history."""


def require_reason(name: str, version: int, reason: str) -> None:
    """A move of the champion by hand says why, in one line: ``ValueError`` for an empty reason, one over
    :data:`REASON_MAX_CHARS`, or one holding a line break or another control character (printed in the
    champion's history, a line break forged a move of its own)."""
    if not reason.strip():
        raise ValueError(f"moving the champion of {name} to version {version} needs a reason")
    unprintable = sorted({repr(c) for c in reason if unicodedata.category(c) in NOT_IN_A_LINE})
    if unprintable:
        raise ValueError(
            f"the reason for moving the champion of {name} is one line: it holds {', '.join(unprintable)}"
        )
    if len(reason) > REASON_MAX_CHARS:
        raise ValueError(
            f"the reason for moving the champion of {name} has {len(reason):,} characters, over "
            f"{REASON_MAX_CHARS}: say why in a sentence and link the ticket"
        )


def unknown_version(name: str, version: int, known: Iterable[int]) -> RegistryError:
    listed = ", ".join(str(v) for v in sorted(known)) or "none"
    return RegistryError(f"{name} has no version {version} (versions: {listed})")


def incomplete_version(name: str, version: int, job: str) -> RegistryError:
    return RegistryError(
        f"{name} version {version} is incomplete (its publication did not finish): "
        "it cannot be champion; retry the publication of its training job "
        f"{job} to complete it"
    )


def log_promoted(name: str, version: int, who: str, reason: str, moved: Mapping[str, Any] | None) -> None:
    if moved is not None:
        log.info(
            "%s champion moved from version %s to %s by %s: %s",
            name,
            "(none)" if moved["previous_version"] is None else moved["previous_version"],
            version,
            who,
            reason,
        )
