"""Write-audit-publish of landed data: the landing contract, land (stage a day), the audit's row rules and quarantine, the publish transaction.

Imports recflow.core, recflow.warehouse and recflow.quality (the Great Expectations runner).
"""
