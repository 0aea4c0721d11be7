"""How a setting is declared and read from the environment.

A field of ``recflow.core.config.Settings`` carries an :class:`Env` marker (its variable,
what it is for, what the production profile does with it) beside its type; the validated
types (:data:`Integer`, :data:`AbsolutePath`, :data:`Share`) and :data:`REQUIRED` are
declared here. :func:`walk` lists the declared fields as :class:`DeclaredSetting` rows, which
:func:`read_env` (``Settings.from_env``), :func:`env_of` (``Settings.to_env``) and
``docs/configuration.md`` are derived from. ``RECFLOW_PROFILE`` picks the defaults; a value
that does not validate is reported as one line naming its variable.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import math
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar, get_args, get_origin, get_type_hints

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from recflow.core.errors import ConfigError
from recflow.core.profiles import DBT_VARIABLES

log = logging.getLogger(__name__)

Profile = Literal["embedded", "production"]
PROFILES: Final[tuple[Profile, ...]] = get_args(Profile)
T = TypeVar("T")


class _Required:
    """The production default of a setting that production must be given explicitly."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclasses.dataclass(frozen=True)
class Env:
    """How a field is read from the environment; the field's type and default say the rest.

    ``production`` is the field's default under ``RECFLOW_PROFILE=production``:
    ``None`` keeps the embedded default, :data:`REQUIRED` makes the variable
    mandatory (only while ``required_if`` holds, when given as ``(field, value)``),
    anything else replaces the default. ``shown_default`` stands in for a default
    that depends on the machine (a path) in the generated documentation.
    """

    name: str
    help: str
    production: object = None
    required_if: tuple[str, str] | None = None
    shown_default: str | None = None


def _integer(value: object) -> object:
    """Read an integer the way Python's ``int`` does: ``"5.0"`` is not one."""
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise PydanticCustomError("not_an_integer", "not an integer") from None
    return value


def _memory_size(value: str) -> str:
    """A size DuckDB reads: a number and a unit, ``4GB`` or ``512MiB``."""
    size = re.fullmatch(r"(\d+(\.\d+)?)\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value)
    if not size or float(size.group(1)) == 0:
        raise PydanticCustomError("not_a_size", "not a memory size such as 4GB or 512MiB")
    return value


Integer = Annotated[int, BeforeValidator(_integer)]


def _absolute(path: Path) -> Path:
    """``~`` expanded (a quoted ``'~/x'`` reaches the process as written), then absolute."""
    return path.expanduser().resolve()


def _folder(path: Path) -> Path:
    """An absolute path that is a folder or not there yet (it is made when first needed)."""
    path = _absolute(path)
    if path.exists() and not path.is_dir():
        raise PydanticCustomError("not_a_folder", "is a file, not a folder")
    return path


def _url_of(*schemes: str, kinds: str, alone: tuple[str, ...] = ()) -> AfterValidator:
    """A URL whose scheme, without a ``+driver``, is one of ``schemes``. Checked when the settings are
    read: MLflow took ``'not a uri'`` for a file store's folder, and ``nope://x`` failed only where it was
    used, each with a traceback. The refusal does not repeat the value: it may hold a password."""

    def check(value: str) -> str:
        if value in alone:  # a scheme alone: MLflow's `databricks` (the default profile's workspace)
            return value
        given = re.match(r"([a-z][a-z0-9.+-]*)://", value)  # SQLAlchemy reads no upper-case scheme
        scheme = given.group(1).split("+", 1)[0] if given else ""
        if scheme not in schemes:
            hint = (
                " (write postgresql://: SQLAlchemy no longer reads postgres://)"
                if scheme == "postgres"
                else ""
            )
            raise PydanticCustomError(
                "not_a_url", f"is not {kinds}{hint}; its value is not repeated here: it may hold a password"
            )
        return value

    return AfterValidator(check)


DatabaseUrl = Annotated[
    str,
    _url_of(
        "sqlite",
        "postgresql",
        kinds="a URL of SQLite or PostgreSQL (sqlite:////path/x.db, postgresql://user:password@host:5432/db)",
    ),
]
MlflowStoreUri = Annotated[
    str,
    _url_of(
        "sqlite",
        "postgresql",
        "mysql",
        "mssql",
        "http",
        "https",
        "databricks",
        alone=("databricks",),
        kinds="an MLflow store URI (sqlite:////path/mlflow.db, postgresql://user:password@host:5432/db, "
        "http(s)://a-tracking-server)",
    ),
]


def _artifact_root(value: str) -> str:
    """``s3://bucket[/prefix]`` or ``file:///absolute/folder``: ``s3:/bucket/x`` or ``bucket/x`` were read
    and failed only in the first task that stored something, with botocore's ``Invalid bucket name ""``."""
    if re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]*(/.*)?", value) or re.fullmatch(r"file:///.*", value):
        return value
    raise PydanticCustomError(
        "not_an_artifact_root",
        "is not s3://bucket/prefix (a bucket of lower-case letters, digits, dots and hyphens) or "
        "file:///absolute/folder",
    )


ArtifactRoot = Annotated[str, AfterValidator(_artifact_root)]
AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
FolderPath = Annotated[Path, AfterValidator(_folder)]
MemorySize = Annotated[str, AfterValidator(_memory_size)]
SHARE_BOUNDS = (0, 1)
"""A share's least and greatest values: the settings', the run params' and the CLI's one bound."""
Share = Annotated[float, Field(ge=SHARE_BOUNDS[0], le=SHARE_BOUNDS[1])]

# Settings are built from the fields' own names; validation (defaults included) runs
# on construction and again on ``dataclasses.replace``.
SETTINGS_CONFIG = ConfigDict(extra="forbid", validate_default=True)


@dataclasses.dataclass(frozen=True)
class DeclaredSetting:
    """One field read from the environment: where it sits in ``Settings`` and how it is declared."""

    path: tuple[str, ...]
    env: Env
    annotation: Any
    default: Any
    constraints: tuple[object, ...]

    def value_in(self, settings: object) -> Any:
        value: Any = settings
        for part in self.path:
            value = getattr(value, part)
        return value


def walk(cls: type, prefix: tuple[str, ...]) -> Iterator[DeclaredSetting]:
    hints = get_type_hints(cls, include_extras=True)
    fields = cls.__pydantic_fields__  # type: ignore[attr-defined]
    for name, info in fields.items():
        env = next((m for m in _metadata(hints[name]) if isinstance(m, Env)), None)
        if env is not None:
            yield DeclaredSetting(
                path=(*prefix, name),
                env=env,
                annotation=info.annotation,
                default=info.default,
                constraints=tuple(m for m in info.metadata if not isinstance(m, Env)),
            )
        elif dataclasses.is_dataclass(info.annotation):
            yield from walk(info.annotation, (*prefix, name))  # type: ignore[arg-type]


def _metadata(hint: Any) -> tuple[object, ...]:
    """All ``Annotated`` metadata of ``hint``, through aliases such as ``Share``."""
    found: list[object] = []
    while get_origin(hint) is Annotated:
        found.extend(hint.__metadata__)
        hint = hint.__origin__
    return tuple(found)


def _read_profile(given: Mapping[str, str]) -> Profile:
    profile = given.get("RECFLOW_PROFILE", "embedded")
    if profile not in PROFILES:
        # not in ``invalid``: every default hangs on the profile, so none can stand in for it
        raise ConfigError(f"RECFLOW_PROFILE={profile!r} is not one of {', '.join(PROFILES)}")
    return profile  # type: ignore[return-value]


def _applies(setting: DeclaredSetting, settings: object) -> bool:
    if setting.env.required_if is None:
        return True
    field, value = setting.env.required_if
    return bool(getattr(settings, field) == value)


_PROBLEMS: Final = {
    "not_an_integer": "is not an integer",
    "not_a_size": "is not a memory size such as 4GB or 512MiB",
    "not_a_folder": "is a file, not a folder",
    "int_parsing": "is not an integer",
    "int_from_float": "is not an integer",
    "float_parsing": "is not a number",
    "float_type": "is not a number",
}


def _is_nan(value: object) -> bool:
    """NaN fails every bound, so pydantic calls it above the greatest allowed value."""
    try:
        return math.isnan(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _explain(error: ValidationError, declared: tuple[DeclaredSetting, ...]) -> ConfigError:
    """One line per invalid value, naming its variable: ``RECFLOW_X='abc' is not an integer``; the
    variables in ``invalid``."""
    by_path = {s.path: s for s in declared}
    lines = []
    invalid = []
    for problem in error.errors(include_url=False):
        path = tuple(str(part) for part in problem["loc"])
        setting = by_path.get(path[:2]) or by_path.get(path[:1])
        if setting is None:  # not a setting read from the environment
            lines.append(f"{'.'.join(path)}: {problem['msg']}")
            continue
        name, value = setting.env.name, problem["input"]
        invalid.append(name)
        if problem["type"] == "not_a_url":
            lines.append(f"{name} {problem['msg']}")
        elif problem["type"] in _PROBLEMS:
            lines.append(f"{name}={value!r} {_PROBLEMS[problem['type']]}")
        elif problem["type"] == "literal_error":
            allowed = get_args(setting.annotation)
            lines.append(f"{name}={value!r} is not one of {', '.join(map(str, allowed))}")
        elif problem["type"] in ("greater_than_equal", "less_than_equal") and _is_nan(value):
            lines.append(f"{name}={value!r} is not a number")
        elif problem["type"] == "greater_than_equal":
            lines.append(f"{name}={value!r} is below the least allowed value, {problem['ctx']['ge']}")
        elif problem["type"] == "less_than_equal":
            lines.append(f"{name}={value!r} is above the greatest allowed value, {problem['ctx']['le']}")
        else:
            lines.append(f"{name}={value!r}: {problem['msg'][0].lower()}{problem['msg'][1:]}")
    return ConfigError("\n".join(lines), invalid=tuple(dict.fromkeys(invalid)))


def read_env(build: Callable[..., T], declared: tuple[DeclaredSetting, ...], env: Mapping[str, str]) -> T:
    """``build`` called with the values of ``declared`` that ``env`` gives (an empty value counts as unset)
    and, in the production profile, the production defaults.

    Raises :class:`ConfigError` naming every variable whose value is invalid, or,
    in the production profile, every variable that must be set and is not.
    """
    given = {s.env.name: env[s.env.name] for s in declared if env.get(s.env.name)}
    _warn_unknown(env, {s.env.name for s in declared})
    profile = _read_profile(given)
    values: dict[str, Any] = {}
    unset_required: list[DeclaredSetting] = []
    for setting in declared:
        if setting.env.name in given:
            value: object = given[setting.env.name]
        elif profile == "production" and setting.env.production is REQUIRED:
            unset_required.append(setting)
            continue
        elif profile == "production" and setting.env.production is not None:
            value = setting.env.production
        else:
            continue
        group = values
        for part in setting.path[:-1]:
            group = group.setdefault(part, {})
        group[setting.path[-1]] = value
    try:
        settings = build(**values)
    except ValidationError as error:
        raise _explain(error, declared) from None
    missing = [s for s in unset_required if _applies(s, settings)]
    if missing:
        raise ConfigError(
            "RECFLOW_PROFILE=production needs these variables set (docs/configuration.md):\n"
            + "\n".join(f"  {s.env.name}: {s.env.help}" for s in missing)
        )
    return settings


_WARNED: set[str] = set()
"""The unknown variables already warned of in this process (settings are read many times in one)."""


def _warn_unknown(env: Mapping[str, str], names: set[str]) -> None:
    """Warn, once per process, of each set ``RECFLOW_`` variable that is no setting: a misspelled one
    (``RECFLOW_MAX_QUARANTINE_SHAR``) would otherwise leave its setting at the default without a word."""
    for name in sorted(env):
        if not name.startswith("RECFLOW_") or name in names or name in DBT_VARIABLES or name in _WARNED:
            continue
        if not env[name]:
            continue
        _WARNED.add(name)
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
        log.warning(
            "%s is not a recflow setting, so it changes nothing%s (docs/configuration.md lists the settings)",
            name,
            f": did you mean {close[0]}?" if close else "",
        )


def read_env_despite_refused(
    build: Callable[..., T], declared: tuple[DeclaredSetting, ...], env: Mapping[str, str]
) -> tuple[T, ConfigError | None]:
    """:func:`read_env` and ``None``; where some values of ``env`` are refused, what it builds with
    those variables at their defaults, and the refusal: for the failure callback, which must record
    and send the very failure a refused value causes. Anything else (a refused profile, required
    variables unset) raises as :func:`read_env` does."""
    try:
        return read_env(build, declared, env), None
    except ConfigError as refused:
        if not refused.invalid:
            raise
        return read_env(build, declared, {k: v for k, v in env.items() if k not in refused.invalid}), refused


def env_of(settings: object, declared: tuple[DeclaredSetting, ...]) -> dict[str, str]:
    """The variables that make :func:`read_env` rebuild ``settings``: each declared value that is set."""
    env = {}
    for setting in declared:
        value = setting.value_in(settings)
        if value is not None:
            env[setting.env.name] = str(value)
    return env
