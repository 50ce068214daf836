"""The errors that mean "bad input" (a wrong tuple, task, path, vocabulary...): their message is the whole
story, so entry points print it instead of a stack trace."""
import sys
from pathlib import Path
from typing import NoReturn

from bortlab.config import SetupError
from bortlab.data.io import DataError
from bortlab.data.tasks import TaskError
from bortlab.models.arch import ArchError


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [ArchError, DataError, TaskError, SetupError]
    try:
        from bortlab.models.hf import VocabMismatchError

        errors.append(VocabMismatchError)
    except ImportError:
        pass
    return tuple(errors)


USER_ERRORS = _user_errors()


def die(message: str) -> NoReturn:
    """For scripts (bench/): print `<program>: <message>` to stderr and exit 2, argparse's code for bad input."""
    print(f"{Path(sys.argv[0]).name}: {message}", file=sys.stderr)
    sys.exit(2)
