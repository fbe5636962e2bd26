"""Alert rules evaluated fix by fix: pure functions over plain data and a JSON-able state."""

from milepost_worker.rules.engine import AlertKey, AlertOut, RuleEngine, RuleSpec

__all__ = ["AlertKey", "AlertOut", "RuleEngine", "RuleSpec"]
