"""Stand-ins for upstream producers: synthetic events and MovieLens, written to the landing zone under the data contract.

Imports recflow.core and recflow.ingest (the contract's schemas).
"""
