"""pllm: personal language models that live on the user's own device.

The public API is the user's model: `pllm.open()` (see `personal/library.py`):

    with pllm.open(passphrase="s3cret") as me:
        me.remember("My boat is called Seabird.")
        print(me.ask("What is my boat called?").text)

Run `pllm --help` for the command line, or `python -m pllm`.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("pllm")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from pllm.personal.library import PersonalModel

__all__ = ["__version__", "open"]


def open(home: Any = None, passphrase: str | None = None, **settings: Any) -> "PersonalModel":
    """The user's model, ready to ask (`pllm.personal.library.open_model`); imported on use, so `import pllm`
    stays light."""
    from pllm.personal.library import open_model

    return open_model(home, passphrase, **settings)
