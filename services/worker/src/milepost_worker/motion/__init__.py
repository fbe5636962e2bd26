"""The trip/stop state machine (the distance-window rule): pure, over plain data."""

from milepost_worker.motion.machine import (
    Fix,
    MotionMachine,
    MotionParams,
    StopSegment,
    TripSegment,
)

__all__ = ["Fix", "MotionMachine", "MotionParams", "StopSegment", "TripSegment"]
