"""The proof's random walk at length: hundreds of SIGKILLed runs of the real CLI, checked throughout.

    .venv/bin/python bench/kill_walk.py --kills 200 --seed 1 --database-url sqlite:////tmp/kill-walk.db
    .venv/bin/python bench/kill_walk.py --kills 200 --seed 1 \
        --database-url postgresql://postgres@127.0.0.1/kapture_kill_walk

The same walk as `tests/test_proof.py` (tests/proof_model.py): orders created and edited (also
with an unchanged stamp, and while the CLI pages), rows deleted by hand, newest-first order, a
silent `limit` cap, a 5% transient fault mix, and `backfill`/`sync`/`reconcile` SIGKILLed at
random instants and run again, each completed run checked against the emulator's truth. The
emulator runs in this process; the target database is emptied first (on PostgreSQL it is
created if missing). Prints the figures and every invariant violation; exits 1 if any.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sync_throughput import empty_target  # noqa: E402  (bench/ is on the path as the script's folder)

from sync.emulator import Emulator, EmulatorConfig  # noqa: E402
from tests.proof_model import Walk, WalkConfig  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="sqlite:////tmp/kapture-kill-walk.db")
    parser.add_argument("--kills", type=int, default=200, help="walk until this many kills landed")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--orders", type=int, default=1500, help="orders the emulator starts with")
    parser.add_argument("--days", type=int, default=16, help="history the emulator holds")
    parser.add_argument(
        "--page-size", type=int, default=25, help="KAPTURE_PAGE_SIZE of the CLI (200+: pages go to the worker process)"
    )
    parser.add_argument("--max-seconds", type=float, default=6 * 3600, help="stop walking after this long")
    parser.add_argument(
        "--cli-root", type=Path, default=ROOT, help="checkout whose `python -m sync` is run (default: this one)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only violations and the figures")
    args = parser.parse_args()

    empty_target(args.database_url)
    emulator = Emulator(EmulatorConfig(orders=args.orders, days=args.days, seed=args.seed, malformed_rate=0.01))
    config = WalkConfig(
        args.database_url,
        seed=args.seed,
        kills=args.kills,
        max_seconds=args.max_seconds,
        days=args.days,
        page_size=args.page_size,
        cli_root=args.cli_root.resolve(),
        log=None if args.quiet else lambda line: print(line, flush=True),
    )
    started = time.monotonic()
    with emulator.serve(host="127.0.0.1", port=0) as serving:
        walk = Walk(serving.url, config)
        try:
            walk.walk()
        finally:
            walk.close()
    print(f"\nkill walk: {args.kills} kills asked for, seed {args.seed}, {time.monotonic() - started:.0f}s")
    print(walk.summary())
    return 1 if walk.violations else 0


if __name__ == "__main__":
    sys.exit(main())
