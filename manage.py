#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

from __future__ import annotations

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    if sys.argv[1:2] == ["replay"]:
        # replay runs in-process on a file (calibration/bayes/replay.py): no database, no session,
        # nothing signed. It runs from a fresh clone exactly as docs/replay.md shows, so it asks
        # for no SECRET_KEY; the placeholder key never reaches a server.
        os.environ.setdefault("BATON_INSECURE_DEV_KEY", "1")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
