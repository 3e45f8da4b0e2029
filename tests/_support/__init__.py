"""Shared test support: helper models, the multi-process launcher, distributed toys.

Importable as `_support` from every test folder (`pythonpath = ["tests"]` in the pytest
configuration) and from worker scripts (the launcher puts `tests/` on `PYTHONPATH`).
"""
