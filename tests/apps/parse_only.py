"""`python parse_only.py SCRIPT ARGS…` or `python parse_only.py -m MODULE ARGS…`: run the program until its
first argument parse completes, print the parsed namespace and exit 0; a refused command line exits 2 with
argparse's message, as it would. For documented commands that work for minutes or hours: it checks that the
command is accepted as written and runs nothing after the parse."""
import argparse
import runpy
import sys
from pathlib import Path

_parse_args, _parse_known_args = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
_inside = False


def _stop(parsed) -> None:
    print(f"parse_only: accepted as {parsed}", flush=True)
    sys.exit(0)


def parse_args(self, args=None, namespace=None):
    global _inside
    _inside = True                       # parse_args calls parse_known_args: that inner call is not the end
    try:
        parsed = _parse_args(self, args, namespace)
    finally:
        _inside = False
    _stop(parsed)


def parse_known_args(self, args=None, namespace=None):
    parsed = _parse_known_args(self, args, namespace)
    if _inside:
        return parsed
    _stop(parsed)


argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = parse_args, parse_known_args

if __name__ == "__main__":
    if sys.argv[1] == "-m":
        sys.argv = [sys.argv[2], *sys.argv[3:]]
        runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
    else:
        script = Path(sys.argv[1]).resolve()
        sys.argv = sys.argv[1:]
        sys.path.insert(0, str(script.parent))      # as `python SCRIPT` puts the script's folder first
        runpy.run_path(str(script), run_name="__main__")
    sys.exit("parse_only: the program ended without parsing its arguments")
