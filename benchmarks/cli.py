"""What every command line of the project shares."""

from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line with status 2."""

    def error(self, message: str) -> None:
        self.exit(2, f"error: {message}\n")
