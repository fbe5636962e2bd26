"""``python -m bench.worker``: see run.py."""

from run import main

main()
