"""The errors that mean "bad input" (a wrong tuple, task, path, vocabulary...): their message is the whole
story, so entry points print it instead of a stack trace."""
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
