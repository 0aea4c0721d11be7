"""Foundations every other part of recflow imports: settings, errors, the artifact store, ownership markers, leases.

Imports nothing else of recflow.
"""
