"""alert_rules feature: CRUD of the rules the worker evaluates."""
