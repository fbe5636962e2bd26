"""`python -m milepost_sim`: the same as the `milepost-sim` command."""

from milepost_sim.cli import main

raise SystemExit(main())
