"""Reliability tests: processes killed and rerun, injected faults, concurrent writers, secrets.

Results and the commands that reproduce them are in ``docs/reliability.md``.
"""
