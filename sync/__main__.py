"""`python -m sync` is the same as `kapture-sync`."""

from sync.cli import main

if __name__ == "__main__":  # importing this module (multiprocessing's spawn does) must not run the CLI
    raise SystemExit(main())
