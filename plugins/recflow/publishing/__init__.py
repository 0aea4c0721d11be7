"""What publication does besides the registry's bookkeeping: the serving refresh of user vectors and the pictures.

Imports recflow.core, recflow.registry and below.
"""
