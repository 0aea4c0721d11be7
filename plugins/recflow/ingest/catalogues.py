"""The catalogues of the landing zone (``pins/``, ``users/``: the latest full snapshot of each), read and
checked against the landing contract (:mod:`recflow.ingest.contract`): their files' shape, and a key that
is unique and not null."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recflow.core.errors import ContractViolation
from recflow.ingest.contract import CONTRACT, ID_PADDING, data_files, read_file


def read_catalogue(directory: Path, schema: pa.Schema) -> pa.Table:
    """The catalogue's files (the partitions' rule: every file whose name does not start with ``_`` or
    ``.``, as an engine reading the folder itself reads it), checked; refused when there are none, when
    they hold no row, or when its key is null or repeated."""
    files = data_files(directory) if directory.is_dir() else []
    if not files:
        raise ContractViolation(
            f"{directory}: no Parquet snapshot of the catalogue; see {CONTRACT}",
            check="catalogue_present",
            expected="one or more Parquet files",
            evidence=str(directory),
        )
    table = pa.concat_tables([read_file(path, schema, frozenset()) for path in files])
    if table.num_rows == 0:
        raise ContractViolation(
            f"{directory}: the catalogue's {len(files)} file(s) hold no row: a full snapshot is never empty "
            f"(an export that failed half-way?); see {CONTRACT}",
            check="catalogue_present",
            observed="0 rows",
            expected="a full snapshot: one row per id",
            evidence=", ".join(str(f) for f in files),
        )
    key = schema.names[0]
    ids = table.column(key)
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(ids), ""), True)
    nulls = np.flatnonzero(empty.to_numpy(zero_copy_only=False)).tolist()
    counts = pc.value_counts(ids.drop_null())
    duplicates = sorted(counts.field("values").filter(pc.greater(counts.field("counts"), 1)).to_pylist())
    # 'u00001 ' is not the events' 'u00001': its user would have no features (the audit quarantines such
    # ids in events, with the same characters)
    padded = ids.filter(pc.fill_null(pc.not_equal(pc.utf8_trim(ids, characters=ID_PADDING), ids), False))
    if nulls or duplicates or len(padded):
        found = []
        if nulls:
            found.append(f"{len(nulls)} null or empty {key}(s) (rows {nulls[:5]})")
        if duplicates:
            found.append(f"{len(duplicates)} duplicated {key}(s) (e.g. {duplicates[:5]})")
        if len(padded):
            found.append(f"{len(padded)} {key}(s) with spaces around them (e.g. {padded[:5].to_pylist()})")
        raise ContractViolation(
            f"{directory}: the catalogue's key {key!r} must be unique, not null and without spaces around it: "
            f"{'; '.join(found)}; see {CONTRACT}",
            check="catalogue_key",
            columns=[key],
            observed="; ".join(found),
            expected=f"unique, non-null {key} without spaces around it",
            evidence=", ".join(str(f) for f in files),
        )
    return table
