"""``recflow gc``: delete the pipeline's artifacts that no registered version references
(the policy is ``recflow.stack.retention``'s)."""

from __future__ import annotations

import argparse
import json

from recflow.cli.args import Subcommands
from recflow.cli.reach import Kind, reading, registry_store
from recflow.core.artifacts import file_uri_path
from recflow.core.config import ConfigError, Settings
from recflow.stack.retention import collect, plan, report_lines


def _require_local_store(settings: Settings) -> None:
    """Refuse a home, or a local artifact root given, that does not exist: "nothing to delete" read as a
    clean store when the setting was mistyped. (A home set up but with nothing trained yet has no
    artifacts folder: that one is answered.)"""
    if settings.artifact_root is None:
        missing, given = not settings.home.is_dir(), f"RECFLOW_HOME={settings.home}"
    else:
        local = settings.artifact_root.startswith("file:")
        missing, given = local and not file_uri_path(settings.artifact_root).is_dir(), "RECFLOW_ARTIFACT_ROOT"
    if missing:
        raise ConfigError(
            f"the artifact store {settings.artifacts_uri} does not exist ({given}): nothing has run there, "
            "so there is nothing to collect. Check the setting (a typo makes a new, empty home)"
        )


def _stores(settings: Settings, kind: Kind) -> tuple[str, str]:
    """The store gc failed to reach: the registry's, whose references it reads first; under SageMaker's
    registry an AWS failure may also be the artifact store's (S3), which it lists and deletes from."""
    shown, variable = registry_store(settings, kind)
    if kind == "aws" and settings.registry_backend == "sagemaker":
        return f"{shown} or the artifact store {settings.artifacts_uri}", variable
    return shown, variable


def cmd_gc(settings: Settings, args: argparse.Namespace) -> int:
    _require_local_store(settings)  # before MLflow's modules load: a mistyped home is refused at once
    return _collect(settings, args)


@reading(_stores)  # the registry's references decide what is kept: one that cannot be read is one line
def _collect(settings: Settings, args: argparse.Namespace) -> int:
    decided = plan(settings)  # reads the registry before anything is listed or deleted
    if not args.dry_run:
        collect(settings, decided, allow_empty_registry=args.allow_empty_registry)
    if args.json:
        shown = decided.items if args.show_kept else decided.deletable
        print(json.dumps([i.as_dict(decided.now) for i in shown], indent=2))
    else:
        print("\n".join(report_lines(decided, deleted=not args.dry_run, show_kept=args.show_kept)))
    return 0


def add_command(sub: Subcommands) -> None:
    gc = sub.add_parser(
        "gc",
        help="delete the snapshots, checkpoints, model and serving archives, evaluations and job folders "
        "that no registered version references, beyond the most recent (RECFLOW_RETENTION_KEEP_LAST)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    gc.add_argument("--json", action="store_true", help="the items as JSON (kind, uri, bytes, age, why)")
    gc.add_argument("--show-kept", action="store_true", help="also list what is kept, and why")
    gc.add_argument(
        "--allow-empty-registry",
        action="store_true",
        help="delete even though the registry has no version (refused by default: a wrong tracking URI?)",
    )
    gc.set_defaults(func=cmd_gc)
