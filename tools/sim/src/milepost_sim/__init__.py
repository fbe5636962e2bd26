"""Milepost's fleet simulator: vehicles on a street grid pushed through the gateway
(`milepost-sim run`, `backfill`), scripted drives with their expected trips, stops and alerts
(`milepost_sim.script`), and `make demo` (`milepost-sim demo`, `demo-stop`)."""
