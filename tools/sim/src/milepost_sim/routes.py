"""Routes on a street grid: polylines in local meters, and staircase paths along streets.

Streets run east-west at every multiple of ``block_m`` of y and north-south at every
multiple of x. A staircase path only ever moves in two directions (say east and north), so
the straight line between any two of its points is at least their distance along the path
divided by sqrt(2): the property the scripted drive relies on to keep every leg long.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from dataclasses import dataclass, field

Point = tuple[float, float]
_EPS = 1e-6

# Unit vectors of the four directions.
EAST, NORTH, WEST, SOUTH = (1, 0), (0, 1), (-1, 0), (0, -1)
DIRECTIONS = (EAST, NORTH, WEST, SOUTH)


@dataclass(slots=True)
class Polyline:
    """Points joined by straight segments; ``at(s)`` is the point ``s`` meters along."""

    points: list[Point]
    cumulative: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.cumulative = [0.0]
        for (x1, y1), (x2, y2) in itertools.pairwise(self.points):
            self.cumulative.append(self.cumulative[-1] + math.hypot(x2 - x1, y2 - y1))

    @property
    def length(self) -> float:
        return self.cumulative[-1]

    def at(self, s: float) -> Point:
        if s <= 0:
            return self.points[0]
        if s >= self.length:
            return self.points[-1]
        i = bisect.bisect_right(self.cumulative, s) - 1
        (x1, y1), (x2, y2) = self.points[i], self.points[i + 1]
        span = self.cumulative[i + 1] - self.cumulative[i]
        u = (s - self.cumulative[i]) / span if span > 0 else 0.0
        return x1 + u * (x2 - x1), y1 + u * (y2 - y1)


def _on_line(value: float, block_m: float) -> bool:
    rest = value % block_m
    return rest < _EPS or block_m - rest < _EPS


def _to_next_line(value: float, step: int, block_m: float) -> float:
    """Distance from ``value`` to the next multiple of ``block_m`` in direction ``step``."""
    if _on_line(value, block_m):
        return block_m
    rest = value % block_m
    return block_m - rest if step > 0 else rest


def staircase_out(
    rng: random.Random, start: Point, directions: tuple[Point, Point], length: float, block_m: float
) -> Polyline:
    """A path of exactly ``length`` meters from an intersection ``start`` along streets,
    moving only in the two ``directions``, in runs of one to four blocks."""
    x, y = start
    points: list[Point] = [start]
    remaining = length
    heading = rng.randrange(2)
    while remaining > _EPS:
        dx, dy = directions[heading]
        run = min(remaining, rng.randint(1, 4) * block_m)
        x, y = x + dx * run, y + dy * run
        points.append((x, y))
        remaining -= run
        heading = 1 - heading
    return Polyline(points)


def staircase_home(rng: random.Random, start: Point, home: Point, block_m: float) -> Polyline:
    """A shortest path along streets from ``start`` (on a street) to the intersection
    ``home``, turning at random intersections; its length is the Manhattan distance."""
    x, y = start
    points: list[Point] = [start]
    while abs(x - home[0]) > _EPS or abs(y - home[1]) > _EPS:
        options = []
        # Along an east-west street (y on a line) the x distance may shrink, and vice versa.
        if abs(x - home[0]) > _EPS and _on_line(y, block_m):
            options.append(0)
        if abs(y - home[1]) > _EPS and _on_line(x, block_m):
            options.append(1)
        axis = rng.choice(options)
        here, goal = (x, home[0]) if axis == 0 else (y, home[1])
        step = 1 if goal > here else -1
        run = _to_next_line(here, step, block_m) + rng.randint(0, 2) * block_m
        run = min(run, abs(goal - here))
        if axis == 0:
            x = home[0] if abs(goal - (x + step * run)) < _EPS else x + step * run
        else:
            y = home[1] if abs(goal - (y + step * run)) < _EPS else y + step * run
        points.append((x, y))
    return Polyline(points)
