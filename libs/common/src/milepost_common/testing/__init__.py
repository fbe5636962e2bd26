"""Test support: the pytest plugin (real Postgres and Redis), app clients and factories."""
