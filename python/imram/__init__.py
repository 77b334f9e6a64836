"""IMRAM cross-modal retrieval from Python: the imram engine's scoring, evaluation and search.

Every function calls the same library as the `imram` command line and returns the same numbers;
arrays go in and come out as numpy arrays. See docs/python.md.
"""

from ._imram import (
    Error,
    Index,
    InputError,
    IoError,
    Model,
    SearchResults,
    __version__,
    evaluate,
    metrics,
    release_memory,
    set_threads,
    threads,
    tokenize,
)

__all__ = [
    "Error",
    "Index",
    "InputError",
    "IoError",
    "Model",
    "SearchResults",
    "__version__",
    "evaluate",
    "metrics",
    "release_memory",
    "set_threads",
    "threads",
    "tokenize",
]
