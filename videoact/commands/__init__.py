"""Argument parsing for each ``videoact`` sub-command (see ``videoact/cli.py``)."""
