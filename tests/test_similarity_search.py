"""The FAISS index against a brute-force search; saved, reloaded and extended without a rebuild."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lib.similarity_search import VectorIndex, precision_at_k


def unit(n, dim=8, seed=0):
    return F.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(seed)), dim=1)


def test_search_matches_brute_force_cosine_similarity():
    base, queries = unit(50), unit(7, seed=1)
    ids = torch.randperm(50, generator=torch.Generator().manual_seed(2)) + 1000  # the caller's ids, not positions
    index = VectorIndex(8)
    index.add(base, torch.arange(50) % 3, ids)
    found = index.search(queries, 5)
    sims = queries @ base.T
    best = sims.topk(5, dim=1)
    np.testing.assert_allclose(found.similarities, best.values.numpy(), rtol=1e-5)
    assert np.array_equal(found.ids, ids[best.indices].numpy())
    assert np.array_equal(found.labels, (best.indices % 3).numpy())


def test_save_reload_and_extend_without_rebuilding(tmp_path):
    old, new = unit(30), unit(10, seed=5)
    index = VectorIndex(8)
    index.add(old, torch.zeros(30, dtype=torch.long), torch.arange(30))
    reloaded = VectorIndex.load(index.save(tmp_path / "idx").with_suffix(""))
    assert len(reloaded) == 30 and np.array_equal(reloaded.search(old, 1).ids[:, 0], np.arange(30))
    reloaded.add(new, torch.ones(10, dtype=torch.long), torch.arange(30, 40))
    assert len(reloaded) == 40
    hit = reloaded.search(new, 1)
    assert np.array_equal(hit.ids[:, 0], np.arange(30, 40)) and (hit.labels == 1).all()  # the new vectors are found
    assert np.array_equal(reloaded.search(old, 1).ids[:, 0], np.arange(30))  # the old ones are untouched


def test_precision_at_k_by_hand():
    base = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    index = VectorIndex(2)
    index.add(F.normalize(base, dim=1), torch.tensor([0, 0, 1, 0]), torch.arange(4))
    queries = F.normalize(torch.tensor([[1.0, 0.05], [0.05, 1.0]]), dim=1)
    # query 0 (class 0): neighbours 0, 1 -> 2/2; query 1 (class 1): neighbours 2, 3 -> 1/2
    assert precision_at_k(index, queries, torch.tensor([0, 1]), 2) == pytest.approx(0.75)


def test_bad_requests_are_refused(tmp_path):
    index = VectorIndex(4)
    with pytest.raises(ValueError, match="vectors"):
        index.add(unit(3, dim=5), torch.zeros(3), torch.arange(3))
    index.add(unit(3, dim=4), torch.zeros(3), torch.arange(3))
    with pytest.raises(ValueError, match="k=4"):
        index.search(unit(1, dim=4), 4)
    with pytest.raises(FileNotFoundError, match="build and save one first"):
        VectorIndex.load(tmp_path / "missing")
