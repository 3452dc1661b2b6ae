"""The performance harness (``make bench``): corpus, floors, jobs, runs and the report.

Run from the repository root: ``.venv/bin/python -m bench.run [--quick]``. See
``docs/performance.md`` for what it measures and the latest results.
"""
