"""A vector index of embeddings (FAISS), kept on disk, that grows without being rebuilt.

Embeddings are unit length (:func:`lib.metric_learning.embed`), so FAISS's exact inner-product
index (``IndexFlatIP``) ranks by cosine similarity, the similarity the embeddings were trained
with. Each vector's class label and the caller's id for it (say, its row in the training set)
are stored beside the index, so a search returns both.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch


class SearchResult(NamedTuple):
    similarities: np.ndarray  # (Q, k) cosine similarities, best first
    ids: np.ndarray  # (Q, k) the ids given to ``add``
    labels: np.ndarray  # (Q, k) their class labels


class VectorIndex:
    """An exact cosine-similarity index with a class label and an id per vector."""

    def __init__(self, dim: int):
        import faiss

        self.index = faiss.IndexFlatIP(dim)
        self.labels = np.empty(0, dtype=np.int64)
        self.ids = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return self.index.ntotal

    def add(self, vectors: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor) -> None:
        """Append vectors (N, dim) with their labels and ids (N,); nothing already indexed changes."""
        x = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.index.d or not len(x) == len(labels) == len(ids):
            raise ValueError(f"expected ({len(labels)}, {self.index.d}) vectors and {len(labels)} ids, got {tuple(x.shape)} and {len(ids)}")
        self.index.add(x)
        self.labels = np.concatenate([self.labels, labels.cpu().numpy().astype(np.int64)])
        self.ids = np.concatenate([self.ids, ids.cpu().numpy().astype(np.int64)])

    def search(self, queries: torch.Tensor, k: int) -> SearchResult:
        """The ``k`` most similar vectors of every query, best first."""
        if not 1 <= k <= len(self):
            raise ValueError(f"k={k} must lie between 1 and the index's {len(self)} vectors")
        similarities, positions = self.index.search(np.ascontiguousarray(queries.cpu().numpy(), dtype=np.float32), k)
        return SearchResult(similarities, self.ids[positions], self.labels[positions])

    def save(self, path: str | Path) -> Path:
        """Write ``<path>.faiss`` and ``<path>.labels.npy`` (labels and ids); returns the index file."""
        import faiss

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path.with_suffix(".faiss")))
        np.save(path.with_suffix(".labels.npy"), np.stack([self.labels, self.ids]))
        return path.with_suffix(".faiss")

    @classmethod
    def load(cls, path: str | Path) -> VectorIndex:
        import faiss

        path = Path(path)
        files = path.with_suffix(".faiss"), path.with_suffix(".labels.npy")
        if not all(f.is_file() for f in files):
            raise FileNotFoundError(f"no saved index at {path} (expected {files[0].name} and {files[1].name}); build and save one first")
        index = cls.__new__(cls)
        index.index = faiss.read_index(str(files[0]))
        index.labels, index.ids = np.load(files[1])
        if index.index.ntotal != len(index.labels):
            raise ValueError(f"{files[0]} holds {index.index.ntotal} vectors but {files[1]} {len(index.labels)} labels; rebuild the index")
        return index


def precision_at_k(index: VectorIndex, queries: torch.Tensor, query_labels: torch.Tensor, k: int) -> float:
    """Mean over queries of the share of their ``k`` nearest vectors that have the query's class."""
    found = index.search(queries, k).labels
    return float((found == query_labels.cpu().numpy()[:, None]).mean())
