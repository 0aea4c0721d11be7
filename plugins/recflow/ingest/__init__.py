"""Write-audit-publish of landed data, one module a responsibility (each imports only those above it):

- :mod:`~recflow.ingest.contract`: the landing contract (schemas, partition paths, the checks on files);
- :mod:`~recflow.ingest.claims`: day claims, one run of a day at a time (``raw_staging.day_claims``);
- :mod:`~recflow.ingest.land`: the write, a day's files into a staging table of its own;
- :mod:`~recflow.ingest.tables`: the tables the audit writes (``raw.events``, quarantine, audit record);
- :mod:`~recflow.ingest.rules`: the row rules, and the SQL that applies them to a staged day;
- :mod:`~recflow.ingest.publish`: the publish transaction's writes and its conservation guard;
- :mod:`~recflow.ingest.audit`: the audit of a day: its verdict (Great Expectations), then publish or refuse;
- :mod:`~recflow.ingest.days`: the multi-day loop (``audit_days``, ``stage_and_audit``).

Imports recflow.core, recflow.warehouse and recflow.quality (the Great Expectations runner).
"""
