"""Errors of the local stack: each carries one message a developer can act on."""

from __future__ import annotations


class StackError(Exception):
    """A piece of the local stack could not be configured, started, checked or stopped."""


class ConfigError(StackError):
    """A setting from the environment is invalid; the message names the variable."""


class ComponentError(StackError):
    """A component exited or did not become healthy in time; the message ends with its log."""
