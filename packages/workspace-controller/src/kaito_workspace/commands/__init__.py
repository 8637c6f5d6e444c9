"""Subcommands of `kaito-workspace`, one module each (see kaito_workspace.cli).

A listed module that does not exist yet is skipped, so areas can land their command independently.
"""

COMMANDS: tuple[str, ...] = ("validate", "render", "run", "operator")
