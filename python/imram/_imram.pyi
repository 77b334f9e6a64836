"""Type stubs of the compiled module (python/src/module.cpp): what each argument is and returns."""

import os
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

# Region features: a numpy array or anything numpy can view (a CPU torch tensor), float32 or
# float16 (float64 is converted), C- or F-ordered.
FloatArray = Union[npt.NDArray[np.floating[Any]], Any]
IntArray = Union[npt.NDArray[np.integer[Any]], Any]
# A list of caption texts, one text, or (ids (m, L), lengths (m)) with <start>/<end> included.
Captions = Union[Sequence[str], str, Tuple[IntArray, IntArray]]

class Error(Exception):
    """Base of every error the imram library raises."""

class InputError(Error, ValueError):
    """The input is wrong (a file, array, query or option): the message names it."""

class IoError(Error, OSError):
    """The system failed an operation that should have worked (a read, write or mapping)."""

def tokenize(text: str) -> list[str]:
    """The caption's tokens as the authors' vocabularies were built (NLTK's word_tokenize)."""

def set_threads(threads: int) -> None:
    """Threads for every computation of this process (0: all cores)."""

def threads() -> int:
    """Threads computations use."""

def release_memory() -> int:
    """Returns the memory kept from freed tensors for reuse to the system; the bytes released."""

def metrics(sims: FloatArray, fold5: bool = False) -> dict[str, Any]:
    """R@K, medr, meanr and rsum of an (images x captions) score matrix: `imram metrics --json`."""

class Model:
    """An IMRAM model directory, loaded for scoring."""

    def __init__(self, path: Union[str, os.PathLike[str]], device: str = "cpu", threads: int = 0) -> None: ...
    @staticmethod
    def import_checkpoint(source: str, vocab: Optional[str] = None, out: Optional[str] = None) -> "Model":
        """A model from the authors' checkpoint (.pth.tar) or a reference weight directory."""
    @property
    def path(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def has_vocabulary(self) -> bool: ...
    def encode_images(self, images: FloatArray) -> npt.NDArray[np.float32]:
        """(n, regions, img_dim) features -> (n, regions, d) encoded regions."""
    def encode_captions(self, captions: Captions) -> Tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """Captions -> encoded words (m, longest, d) and lengths (m)."""
    def score(self, images: FloatArray, captions: Captions, memory_budget_mb: int = 1024) -> npt.NDArray[np.float32]:
        """S(image, caption) for every pair: (images x captions), the numbers of `imram score`."""
    def explain(self, image: FloatArray, caption: str) -> dict[str, Any]:
        """Attention, step similarities and gates of one pair: image (regions, img_dim), caption text."""

def evaluate(
    model: Model,
    data: Union[str, os.PathLike[str]],
    split: str = "test",
    fold5: bool = False,
    max_images: int = 0,
    progress: bool = False,
    return_sims: bool = False,
) -> dict[str, Any]:
    """`imram eval --json` of a dataset split (plus seconds, and sims with return_sims)."""

class SearchResults:
    """The answers to a batch of queries, best first."""

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    stage1: npt.NDArray[np.float32]
    answers: list[dict[str, Any]]
    def __len__(self) -> int: ...

class Index:
    """A search index directory (imram index build), opened for search."""

    def __init__(self, path: Union[str, os.PathLike[str]], device: str = "cpu", model: Optional[str] = None) -> None: ...
    @staticmethod
    def build(
        model: Union[str, os.PathLike[str], Model],
        data: str,
        split: str = "test",
        *,
        out: str,
        store: str = "float16",
        faiss: Optional[str] = None,
        memory_halves: bool = False,
        progress: bool = False,
        device: str = "cpu",
    ) -> "Index":
        """`imram index build` of a dataset split into `out`, then opened."""
    def add(self, data: str, split: str, progress: bool = False) -> None:
        """`imram index add` of a dataset split."""
    def search(
        self,
        queries: Union[str, Sequence[str]],
        k: int = 10,
        shortlist: Optional[int] = None,
        prefilter: Optional[int] = None,
        step1: Optional[int] = None,
        nprobe: Optional[int] = None,
        ef_search: Optional[int] = None,
    ) -> SearchResults:
        """Images ranked for each text query (`imram search --query`)."""
    def search_images(
        self,
        images: Union[int, IntArray, Sequence[int]],
        k: int = 10,
        shortlist: Optional[int] = None,
        prefilter: Optional[int] = None,
        step1: Optional[int] = None,
        nprobe: Optional[int] = None,
        ef_search: Optional[int] = None,
    ) -> SearchResults:
        """Captions ranked for each of the index's images (`imram search --image`)."""
    @property
    def path(self) -> str: ...
    @property
    def num_images(self) -> int: ...
    @property
    def num_captions(self) -> int: ...
    @property
    def captions(self) -> list[str]: ...
    @property
    def has_shortlist(self) -> bool: ...
    def __len__(self) -> int: ...
    def verify(self) -> None: ...
    def close(self) -> None: ...
    def __enter__(self) -> "Index": ...
    def __exit__(self, *args: object) -> None: ...
