"""The PllmError hierarchy: every error a user can cause, each message saying what to do next.

The CLI turns a PllmError into one stderr line (`error: ...`) and its `exit_code`; the API maps each type to an
HTTP status. Anything else is a bug and propagates (with a traceback when PLLM_DEBUG=1).
"""


class PllmError(Exception):
    """Base class: a problem the user can fix. `str(err)` is the one line shown to them."""

    exit_code = 1
    http_status = 500


class UsageError(PllmError):
    """Bad input: a wrong flag value, an unknown name, a malformed file."""

    exit_code = 2
    http_status = 400


class SettingsError(UsageError):
    """A setting (flag, PLLM_* variable, config file key) has a value pllm cannot use."""


class FileAccessError(UsageError):
    """A file or folder named on the command line cannot be read or written."""


class ModelNotFoundError(PllmError):
    """The configured model file, or the package that ships the default one, is missing."""

    exit_code = 2
    http_status = 503


class ModelLoadError(PllmError):
    """A model file exists but llama.cpp (or transformers) cannot load it."""

    exit_code = 2
    http_status = 503


class PromptTooLongError(PllmError):
    """The prompt does not fit in the context window together with the answer."""

    exit_code = 2
    http_status = 413


class AdapterError(PllmError):
    """A LoRA adapter cannot be loaded, found or applied."""

    exit_code = 2
    http_status = 409


class VaultMissingError(PllmError):
    """There is no vault in this home yet."""

    exit_code = 2
    http_status = 409


class WrongPassphraseError(PllmError):
    """The passphrase does not open the vault (or the file is not a vault)."""

    exit_code = 2
    http_status = 401

    def __init__(self) -> None:
        super().__init__("wrong passphrase or not a pllm vault")


class PassphraseRequiredError(PllmError):
    """No passphrase was given and none can be asked for."""

    exit_code = 2
    http_status = 401


class DiskFullError(PllmError):
    """A write did not fit on the disk (the vault, an adapter, a checkpoint); what was committed before is intact."""

    exit_code = 2
    http_status = 507  # Insufficient Storage

    def __init__(self, where: object) -> None:
        super().__init__(f"the disk holding {where} is full: free some space and run again")


class IngestError(UsageError):
    """A file to ingest is missing, unreadable or malformed (names the file and the line)."""


class AudioError(UsageError):
    """An audio file is missing, empty, unreadable or too long to transcribe."""


class ConsentError(PllmError):
    """The user's consent policy forbids sending anything to this destination."""

    exit_code = 2
    http_status = 403


class CloudUnavailableError(PllmError):
    """The T-tier service cannot be reached (not configured, down, or timing out)."""

    exit_code = 2
    http_status = 503


class CloudError(PllmError):
    """The T-tier service answered with an error (a refused key, a rate limit, a request too large)."""

    exit_code = 2
    http_status = 502


class ExpertError(PllmError):
    """An expert is unknown, not trained yet, or its domain files cannot be read."""

    exit_code = 2
    http_status = 404
