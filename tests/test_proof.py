"""The proof, short form: a seeded random walk of edits, faults, hand deletions and SIGKILLed CLI
runs against the emulator, checked against Kapture's truth on SQLite and on PostgreSQL.

The walk lives in `tests/proof_model.py`; `bench/kill_walk.py` runs the same walk for hundreds of
kills. Set PROOF_SEED to replay a failing walk (its seed is in the failure message).
"""

from __future__ import annotations

import os
import random

from tests.proof_model import Walk, WalkConfig

KILLS_PER_DATABASE = 11  # both databases together: at least 20 kill points


def test_random_walk_with_kills_keeps_the_database_equal_to_kapture(start_emulator, database_url):
    seed = int(os.environ.get("PROOF_SEED") or random.SystemRandom().randrange(1, 1_000_000))
    emulator, serving = start_emulator(orders=1200, days=16, seed=seed % 997 + 1, malformed_rate=0.01)
    log: list[str] = []
    walk = Walk(serving.url, WalkConfig(database_url, seed=seed, kills=KILLS_PER_DATABASE, log=log.append))
    try:
        figures = walk.walk()
    except BaseException:
        print(f"walk with seed {seed} raised; its steps:\n" + "\n".join(log[-60:]))
        raise
    finally:
        walk.close()
    summary = walk.summary()
    print(summary)
    assert figures.kills >= KILLS_PER_DATABASE, f"only {figures.kills} kills landed\n{summary}"
    assert not walk.violations, f"invariants violated (replay with PROOF_SEED={seed}):\n{summary}"
