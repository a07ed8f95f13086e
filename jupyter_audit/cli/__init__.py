"""The command line, `jupyter audit …` (`main`): subcommands over the trail file or a
running server's REST API (`main`), the notebook runner behind `jupyter audit run`
(`runner`) and the demo trail (`demo`). Nothing here runs inside the server process."""

from .main import main

__all__ = ["main"]
