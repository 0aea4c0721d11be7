"""The per-configuration summary of a record of ``bench.stand_in`` runs, made from its runs alone:
``python -m bench.stand_in_summary bench/results/stand-in-two-tower-regularisation.json``.

Runs that differ only by ``seed`` are one configuration. Each configuration is named by how its
hyperparameters differ from the record's ``earlier_defaults``, and its summary gives the seeds,
validation full NDCG@10 per seed (what a configuration is chosen by) and every metric's mean over
seeds, on validation and one step later. A configuration of two or more seeds is compared with
the earlier defaults by Welch's t-test on validation full NDCG@10 (``scipy.stats.ttest_ind``,
unequal variances); a variation of the record's ``todays_defaults`` (it changes every
hyperparameter they change, and more) is compared with those too. Configurations are listed best first by mean validation full NDCG@10.

Without ``--write`` the summary is compared with the one the record holds and the command fails,
naming the first configuration that differs, when they disagree; ``--write`` replaces it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scipy import stats

SELECTION = "full_ndcg@10"
ONE_STEP_LATER = ("full_hr@10", "full_ndcg@10", "full_recall@50", "hr@10", "ndcg@10")


def _change(hyperparameters: Mapping[str, str], reference: Mapping[str, str]) -> dict[str, str]:
    """The hyperparameters (seed aside) whose values differ from ``reference``'s, sorted by name."""
    return {
        name: value
        for name, value in sorted(hyperparameters.items())
        if name != "seed" and name in reference and str(reference[name]) != str(value)
    }


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4)


def _welch(ours: Sequence[float], theirs: Sequence[float]) -> tuple[float, float]:
    result = stats.ttest_ind(ours, theirs, equal_var=False)
    return round(float(result.statistic), 2), round(float(result.pvalue), 4)


def _unnamed_variation(runs: Sequence[Mapping[str, Any]], earlier: Mapping[str, str]) -> str | None:
    """A hyperparameter (seed aside) that takes two values among the runs while ``earlier`` does not
    name it: grouping by changes from ``earlier`` would put its runs in another configuration."""
    for name in sorted({name for run in runs for name in run["hyperparameters"]} - set(earlier) - {"seed"}):
        values = sorted({str(run["hyperparameters"].get(name)) for run in runs})
        if len(values) > 1:
            return f"{name} takes the values {', '.join(values)}"
    return None


def summarize(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The record's configurations, each summarised over its seeds, best first."""
    earlier: Mapping[str, str] = record["earlier_defaults"]
    todays: Mapping[str, str] = record["todays_defaults"]
    unnamed = _unnamed_variation(record["runs"], earlier)
    if unnamed:
        raise ValueError(
            f"{unnamed} among the runs, and the record's earlier_defaults does not name it: add its earlier "
            "default there, or those runs would count as another configuration's"
        )
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for run in record["runs"]:
        key = json.dumps(_change(run["hyperparameters"], earlier), sort_keys=True)
        groups.setdefault(key, []).append(run)

    def selection(runs: Sequence[Mapping[str, Any]]) -> list[float]:
        return [run["validation"][SELECTION] for run in runs]

    baseline = selection(groups[json.dumps({})])
    todays_runs = groups.get(json.dumps(_change({**earlier, **todays}, earlier), sort_keys=True), [])
    summary = []
    for key, unordered in groups.items():
        runs = sorted(unordered, key=lambda run: int(run["hyperparameters"]["seed"]))
        change = json.loads(key)
        entry: dict[str, Any] = {
            "change_from_earlier_defaults": change,
            "seeds": [int(run["hyperparameters"]["seed"]) for run in runs],
            "validation_full_ndcg@10": [round(v, 4) for v in selection(runs)],
            "mean_validation_full_ndcg@10": _mean(selection(runs)),
            "mean_validation_full_hr@10": _mean([run["validation"]["full_hr@10"] for run in runs]),
        }
        for metric in ONE_STEP_LATER:
            entry[f"mean_one_step_later_{metric}"] = _mean([run["one_step_later"][metric] for run in runs])
        if change and len(runs) >= 2:
            entry["welch_t_against_earlier_defaults"], entry["welch_p_against_earlier_defaults"] = _welch(
                selection(runs), baseline
            )
            from_todays = _change(runs[0]["hyperparameters"], {**earlier, **todays})
            if from_todays and set(todays) <= set(change) and len(todays_runs) >= 2:
                entry["welch_t_against_todays_defaults"], entry["welch_p_against_todays_defaults"] = _welch(
                    selection(runs), selection(todays_runs)
                )
        summary.append(entry)
    summary.sort(key=lambda entry: -entry["mean_validation_full_ndcg@10"])
    return summary


def disagreement(summary: Sequence[Mapping[str, Any]], held: Sequence[Mapping[str, Any]]) -> str | None:
    """Where a recomputed summary and a recorded one disagree, configuration by configuration (in
    the recomputed order), or None when they are equal."""
    recorded = {json.dumps(entry["change_from_earlier_defaults"], sort_keys=True): entry for entry in held}
    for entry in summary:
        key = json.dumps(entry["change_from_earlier_defaults"], sort_keys=True)
        if key not in recorded:
            return f"configuration {key} has runs but no recorded summary"
        theirs = recorded.pop(key)
        for name in sorted(set(entry) | set(theirs)):
            if entry.get(name) != theirs.get(name):
                return (
                    f"configuration {key}: {name} is {entry.get(name)!r} by its runs, "
                    f"{theirs.get(name)!r} as recorded"
                )
    if recorded:
        return f"configuration(s) {sorted(recorded)} recorded without runs"
    if [dict(e) for e in summary] != [dict(e) for e in held]:
        return "the configurations are recorded in another order than best first"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("record", type=Path, help="a JSON record of bench.stand_in runs")
    parser.add_argument("--write", action="store_true", help="replace the record's summary")
    args = parser.parse_args(argv)
    record = json.loads(args.record.read_text())
    summary = summarize(record)
    if args.write:
        record["summary"] = summary
        args.record.write_text(json.dumps(record, indent=1) + "\n")
        print(f"{args.record}: summary of {len(summary)} configurations written")
        return 0
    problem = disagreement(summary, record.get("summary", []))
    if problem:
        print(f"{args.record}: {problem}")
        return 1
    print(f"{args.record}: the summary of {len(summary)} configurations matches its runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
