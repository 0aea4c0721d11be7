"""``recflow models list|show|export|promote|history`` and ``recflow mlflow ui``: the model
registry, each version's model card, the champion's moves, and the MLflow UI on its store."""

from __future__ import annotations

import argparse
import getpass
import json
import math
import subprocess
import sys
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recflow.cli.args import SQL_INTEGER_MAX, Subcommands, int_between, model_name, out_dir, tcp_port
from recflow.cli.reach import reading, registry_store
from recflow.core.config import Settings
from recflow.core.errors import ConfigError, RegistryError
from recflow.core.gate import FAMILIES, FULL_METRICS, RANKING_METRICS, family_heading
from recflow.core.urls import shown_url
from recflow.publishing.card import model_card
from recflow.registry import registry_for, require_registry
from recflow.registry.champion import NOT_IN_A_LINE
from recflow.stack.ports import bind_refusal

_reaching_the_registry = reading(registry_store)


def _where(settings: Settings) -> str:
    """Which registry a command read: an empty list from the wrong backend or store is told apart
    from an empty registry only by naming it and the setting that chose it."""
    store, _ = registry_store(settings, "database")
    return f" in {store} (RECFLOW_REGISTRY_BACKEND={settings.registry_backend})"


model_version = int_between(1, SQL_INTEGER_MAX, "a model version")
"""``--version``: versions count from 1; the registry's database stores no larger integer."""


@_reaching_the_registry
def cmd_models_list(settings: Settings, args: argparse.Namespace) -> int:
    require_registry(settings)
    registry = registry_for(settings)
    if args.name:
        try:  # a mistyped name is an error, as for show and history, not an empty list
            registry.require_model(args.name)
        except RegistryError as exc:
            names = sorted({v.name for v in registry.list_versions()})
            print(f"{exc}; registered{_where(settings)}: {', '.join(names) or '(none)'}", file=sys.stderr)
            return 1
    versions = registry.list_versions(args.name)
    if args.json:
        print(json.dumps([v.as_dict() for v in versions], indent=2))
        return 0
    if not versions:
        named = f" named {args.name}" if args.name else ""
        print(f"no registered model versions{named}{_where(settings)}")
    for v in versions:
        metrics = " ".join(f"{k}={val:.4f}" for k, val in sorted(v.metrics.items()))
        aliases = ",".join(v.aliases) or "-"
        print(
            f"{v.name} v{v.version} [{aliases}] {v.created_at} {metrics} job={v.lineage.get('training_job_name')}"
        )
    return 0


@_reaching_the_registry
def cmd_models_export(settings: Settings, args: argparse.Namespace) -> int:
    require_registry(settings)
    registry = registry_for(settings)
    try:  # a model that does not exist, or an alias the registry does not keep: one line, as show says it
        registry.require_model(args.name)
        info = registry.get_by_alias(args.name, args.alias)
    except RegistryError as exc:
        print(f"not exported: {exc}", file=sys.stderr)
        return 1
    if info is None:
        print(f"model {args.name!r} has no version with alias {args.alias!r}", file=sys.stderr)
        return 1
    try:
        out = registry.download(info, Path(args.out))
    except OSError as exc:  # not empty, a file, or not writable: the message names the path
        print(f"not exported: {exc}", file=sys.stderr)
        return 1
    print(f"exported {info.name} version {info.version} ({args.alias}) SavedModel to {out}")
    return 0


@_reaching_the_registry
def cmd_models_promote(settings: Settings, args: argparse.Namespace) -> int:
    require_registry(settings)
    try:
        moved = registry_for(settings).promote(args.name, args.version, args.reason, getpass.getuser())
    except (RegistryError, ValueError) as exc:
        print(f"not promoted: {exc}", file=sys.stderr)
        return 1
    if moved is None:
        print(f"{args.name} version {args.version} already is the champion: nothing moved")
        return 0
    previous = moved.get("previous_version")
    print(
        f"{args.name}: champion moved from version {previous if previous is not None else '(none)'} "
        f"to {moved['version']} by {moved['who']} at {moved['at']} (move {moved['seq']}): {moved['reason']}"
    )
    return 0


def _ranking_text(ranking: str | None) -> str:
    return family_heading(ranking) or "(not recorded)"


def _metric_lines(metrics: Mapping[str, float], indent: str = "  ") -> list[str]:
    """One line per metric family, the full ranking first; a metric of neither family on a last line."""
    lines = []
    for heading, names in FAMILIES.values():
        present = [m for m in names if m in metrics]
        if present:
            lines.append(f"{indent}{heading}: " + "  ".join(f"{m}={metrics[m]:.4f}" for m in present))
            if names is FULL_METRICS and metrics.get("full_users", math.inf) < metrics.get("users", 0):
                lines[-1] += (  # a catalogue too large to rank for every user: a seeded sample of them
                    f"  (over {metrics['full_users']:.0f} of {metrics['users']:.0f} users, "
                    "a seeded sample: docs/model.md, Evaluation)"
                )
    known = {m for _, names in FAMILIES.values() for m in names} | {"users", "full_users"}
    rest = sorted(k for k in metrics if k not in known)
    if rest:
        lines.append(f"{indent}other: " + "  ".join(f"{k}={metrics[k]:.4f}" for k in rest))
    return lines


def _champion_then(gate: dict[str, Any]) -> str:
    """The card's line on the champion the gate compared against (none for a model's first version)."""
    if gate["champion_version"] is None:
        return "  champion then: none (the first version of this model)"
    unrecorded = "" if gate["champion_metrics"] else " (its metrics not recorded)"
    return f"  champion then: version {gate['champion_version']}{unrecorded}"


def _quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "(not recorded)"
    return f"{int(value) if value.is_integer() else value} {unit}"


def _card_text(card: dict[str, Any]) -> list[str]:
    gate, training, lineage = card["gate"], card["training"], card["lineage"]
    thresholds = gate["thresholds"]
    hr, ndcg = RANKING_METRICS.get(gate["ranking"], RANKING_METRICS["sampled"])
    losses = training["loss_per_epoch"]
    lines = [
        f"{card['name']} version {card['version']} [{','.join(card['aliases']) or '-'}] "
        f"created {card['created_at']}" + ("" if card["complete"] else "  (INCOMPLETE publication)"),
        "metrics (gate's evaluation, holdout never in the history):",
        *_metric_lines(card["metrics"]),
        f"gate: {gate['reason'] or '(not recorded)'}",
        f"  judged on: {_ranking_text(gate['ranking'])}; thresholds: {hr} >= {thresholds['min_hr_at_10']}, "
        f"{ndcg} >= {thresholds['min_ndcg_at_10']}, tolerance {thresholds['tolerance']}",
        _champion_then(gate),
        *(_metric_lines(gate["champion_metrics"], indent="    ") if gate["champion_metrics"] else []),
        "hyperparameters: " + " ".join(f"{k}={v}" for k, v in sorted(card["hyperparameters"].items())),
        f"training: {_quantity(training['seconds'], 's')}, peak memory {_quantity(training['peak_memory_mb'], 'MB')}, "
        f"{INPUT_TEXT.get(training['input'], training['input'])}; loss per epoch "
        + (" ".join(f"{x:.4f}" for x in losses) if losses else "(not recorded)"),
        "serving: " + (", ".join(f"{k}={v}" for k, v in sorted(card["serving"].items())) or "as trained"),
        "lineage:",
        *(f"  {k}: {v}" for k, v in sorted(lineage.items())),
        "pictures:",
        *(f"  {k}: {v}" for k, v in sorted(card["pictures"].items())),
    ]
    if not card["pictures"]:
        lines.append("  (none: published before pictures were recorded)")
    return lines


INPUT_TEXT = {
    "memory": "channel loaded whole",
    "stream": "channel streamed by row group",
    "sharded stream": "channel streamed in shares, each host its own row groups",
}
"""How ``recflow models show`` names the training job's input path (``metadata.json``'s ``input``)."""


@_reaching_the_registry
def cmd_models_show(settings: Settings, args: argparse.Namespace) -> int:
    require_registry(settings)
    try:
        card = model_card(settings, args.name, version=args.version, alias=args.alias)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print("\n".join(_card_text(card)))
    return 0


def cmd_mlflow_ui(settings: Settings, args: argparse.Namespace) -> int:
    if settings.registry_backend != "mlflow":
        raise ConfigError(
            f"RECFLOW_REGISTRY_BACKEND={settings.registry_backend}: the models are in that registry and "
            "MLflow holds nothing here, so there is no MLflow UI to open; read the versions with "
            "recflow models list"
        )
    require_registry(settings)
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        settings.mlflow_uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    # refused before the UI starts: its server would fail with a traceback and `mlflow ui` exit 0
    refused = bind_refusal(args.host, args.port)
    if refused is not None:
        raise ConfigError(f"the MLflow UI cannot listen on --host {args.host} --port {args.port}: {refused}")
    print(
        f"MLflow UI on http://{args.host}:{args.port} (store {shown_url(settings.mlflow_uri)}); Ctrl-C stops it"
    )
    try:
        code = subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:
        return 0
    # the UI serves until Ctrl-C: one that ends by itself failed, and `mlflow ui` exits 0 even when its
    # server could not start (it does not pass on its server's status)
    print(
        f"recflow: the MLflow UI on http://{args.host}:{args.port} ended without Ctrl-C (exit status {code}): "
        "its output above says why",
        file=sys.stderr,
    )
    return code or 1


@_reaching_the_registry
def cmd_models_history(settings: Settings, args: argparse.Namespace) -> int:
    require_registry(settings)
    try:
        moves = registry_for(settings).champion_history(args.name)
    except RegistryError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(moves, indent=2))
        return 0
    if not moves:
        print(f"no move of champion recorded for {args.name}")
    for move in moves:
        previous = move.get("previous_version")
        print(
            f"{move['seq']:>4}  {move['at']}  v{previous if previous is not None else '-'} -> v{move['version']}"
            f"  {_one_line(str(move['who']))}  {_one_line(str(move['reason']))}"
        )
    return 0


def _one_line(text: str) -> str:
    """A recorded value printed on its move's line: a control character (written before reasons were
    checked, or by another client of the registry) shown escaped, never as a line of its own."""
    return "".join(repr(c)[1:-1] if unicodedata.category(c) in NOT_IN_A_LINE else c for c in text)


def add_commands(sub: Subcommands) -> None:
    models = sub.add_parser("models", help="the model registry").add_subparsers(
        dest="models_command", required=True
    )
    ls = models.add_parser("list", help="registered model versions")
    ls.add_argument("--name", type=model_name)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_models_list)
    ex = models.add_parser("export", help="write a version's SavedModel to a directory")
    ex.add_argument("--name", type=model_name, required=True)
    ex.add_argument("--alias", default="champion")
    ex.add_argument("--out", type=out_dir, required=True)
    ex.set_defaults(func=cmd_models_export)
    pr = models.add_parser("promote", help="move the alias champion to a version (a rollback), recorded")
    pr.add_argument("--name", type=model_name, required=True)
    pr.add_argument("--version", type=model_version, required=True)
    pr.add_argument("--reason", required=True, help="why: kept in the champion history")
    pr.set_defaults(func=cmd_models_promote)
    hi = models.add_parser("history", help="every move of the alias champion: who, when, why")
    hi.add_argument("--name", type=model_name, required=True)
    hi.add_argument("--json", action="store_true")
    hi.set_defaults(func=cmd_models_history)
    sh = models.add_parser("show", help="the model card of a version: metrics, gate, lineage, pictures")
    sh.add_argument("--name", type=model_name, required=True)
    which = sh.add_mutually_exclusive_group()
    which.add_argument("--version", type=model_version)
    which.add_argument("--alias", default="champion")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=cmd_models_show)

    mlflow = sub.add_parser("mlflow", help="MLflow tools on the project's store").add_subparsers(
        dest="mlflow_command", required=True
    )
    ui = mlflow.add_parser("ui", help="the MLflow UI on the embedded registry (Ctrl-C stops it)")
    ui.add_argument("--host", default="127.0.0.1", help="an address of this machine (default 127.0.0.1)")
    ui.add_argument("--port", type=tcp_port, default=5000, help="1 to 65535 (default 5000)")
    ui.set_defaults(func=cmd_mlflow_ui)
