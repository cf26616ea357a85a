"""`python -m sync` is the same as `kapture-sync`."""

from sync.cli import main

raise SystemExit(main())
