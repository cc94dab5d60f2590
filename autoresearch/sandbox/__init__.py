"""TRUSTED: run one untrusted train.py in isolation and score it (launchers, pool, harness, scorer)."""
