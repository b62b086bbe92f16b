"""What the course's commands (generate.py, serve.py, bench.py) do with
bad input: one line on stderr, exit code 2."""

import argparse


class BadInput(Exception):
    """Input a command refuses; the message is one line."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, whose errors are a BadInput of one line instead of a usage block and exit."""

    def error(self, message):
        raise BadInput(f"{message} (python {self.prog} --help lists the options)")
