"""What can go wrong for a user, by what they have to do about it; each kind has one exit status.

Every error here is already phrased as one line that names the field, file,
folder or backend it is about; the command line prints it as it is and exits
with ``exit_code``. The split is by remedy, so a nightly job can tell "fix the
input" from "try again when the server is up" from "the run broke":

- ``UserError`` (2): something given to trajforge is wrong, found before any
  work starts and before anything is written.

  - ``ConfigError``: the run config or a command-line argument.
  - ``InputError``: a file or folder given or referenced (a tool spec, a KG
    file, an output location) is missing, unreadable, not UTF-8, malformed or
    over a size limit.
  - ``DatasetError``: a dataset is missing, not trajforge's, or damaged.
  - ``PluginError``: a step (built-in or a plug-in) cannot be built from its params.

- ``BackendUnavailableError`` (3): a configured model backend failed its
  preflight check (not listening, not answering, refusing the key, not
  serving the model). Nothing was started; run again when it is up.
- ``RunFailedError`` (1): a run that had started stopped without committing (its
  backend kept failing, a step failed on every item, a commit kept
  conflicting). Its staged shards are kept; the same ``--run-id`` resumes it.
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input, found before any work: one line, exit status 2, nothing written."""

    exit_code = 2


class ConfigError(UserError):
    """A config problem, already phrased as one line naming the file and field."""


class InputError(UserError):
    """A file or folder the user gave or the config names cannot be used as it is."""


class DatasetError(UserError):
    """A dataset that is missing, not a trajforge dataset, or damaged (naming the version and file)."""


class PluginError(UserError):
    """A step that cannot be built from its params (its constructor raised)."""


class BackendUnavailableError(UserError):
    """A configured backend is not usable right now; nothing was started."""

    exit_code = 3


class RunFailedError(RuntimeError):
    """A started run stopped early without committing; its staging is kept for resume."""

    exit_code = 1


def one_line(err: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters: how a contained exception is reported."""
    text = str(err).strip().splitlines()
    message = f"{type(err).__name__}: {text[0]}" if text else type(err).__name__
    return message if len(message) <= limit else message[: limit - 1] + "…"
