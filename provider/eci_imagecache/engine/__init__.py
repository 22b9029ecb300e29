"""The cache engine: pure domain logic (no I/O, no Pulumi).

Every other layer calls into this package; it imports none of them.
"""
