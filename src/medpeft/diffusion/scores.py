"""Generation scores that say what they are: Fréchet distance, precision and recall in the feature
space of a medpeft classifier trained on real images of the target domain, and the accuracy of
that classifier on generated images of each prompt.

- **Fréchet distance** (FD; Heusel et al. 2017, the formula of FID): between Gaussians fitted
  to the two feature sets, ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``. Computed as
  pytorch-fid's ``calculate_frechet_distance`` does (scipy's ``sqrtm``, a small diagonal offset
  when the product is singular, the real part). It is not FID: Inception-v3 weights cannot be
  had here, and a medical encoder is the better judge of medical images anyway.
- **Precision and recall** (Kynkäänniemi et al. 2019): the real manifold is the union of balls
  around each real feature with the distance to its k-th nearest real neighbour as radius;
  precision is the share of generated features inside it, recall the share of real features
  inside the generated manifold. Written here (a dozen lines of ``torch.cdist``).
- **Conditional accuracy**: does the image show what the text asks? The judge's decisions on the
  generated images against the labels their prompts asked for, as balanced accuracy (the mean
  over the prompted classes of the share judged as that class; for multi-label tasks the mean
  over findings of the mean of sensitivity and specificity).

Every number has a floor: the same score between two disjoint halves of the real test split
(FD and precision/recall), and the judge's balanced accuracy on the real images whose captions
were the prompts. FD grows with fewer images, so the generated set and the real half it is
compared with have the same size.
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import linalg


def frechet_distance(a: np.ndarray, b: np.ndarray, eps: float = 1e-6) -> float:
    """FD between feature sets a (N, D) and b (M, D)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():  # singular product: offset the diagonals (pytorch-fid)
        offset = np.eye(len(cov_a)) * eps
        covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = np.real(covmean)
    diff = mu_a - mu_b
    return float(max(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean), 0.0))


def _radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its k-th nearest neighbour in the same set (itself excluded)."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(min(k + 1, len(features)), dim=1).values


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s improved precision and recall of ``fake`` against ``real``."""
    real_t, fake_t = torch.as_tensor(real, dtype=torch.float64), torch.as_tensor(fake, dtype=torch.float64)
    between = torch.cdist(fake_t, real_t)  # (N_fake, N_real)
    precision = (between <= _radii(real_t, k)[None, :]).any(dim=1).double().mean().item()
    recall = (between <= _radii(fake_t, k)[:, None]).any(dim=0).double().mean().item()
    return precision, recall


def conditional_accuracy(predicted: np.ndarray, prompted: np.ndarray, task: str) -> float:
    """Balanced accuracy of the judge's decisions (N, L) against the prompted labels (N, L)."""
    predicted, prompted = np.asarray(predicted), np.asarray(prompted)
    if task in ("binary", "multiclass"):
        classes = np.unique(prompted[:, 0])
        return float(np.mean([(predicted[prompted[:, 0] == c, 0] == c).mean() for c in classes]))
    per_label = []
    for j in range(prompted.shape[1]):
        rates = [(predicted[prompted[:, j] == v, j] == v).mean() for v in (0, 1) if (prompted[:, j] == v).any()]
        per_label.append(np.mean(rates))
    return float(np.mean(per_label))


def split_halves(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the test items, stratified by label row (each row value split evenly)."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    rows = [tuple(r) for r in np.asarray(labels)]
    for value in sorted(set(rows)):
        members = rng.permutation([i for i, r in enumerate(rows) if r == value])
        cut = (len(members) + rng.integers(0, 2)) // 2
        first += members[:cut].tolist()
        second += members[cut:].tolist()
    return np.sort(first), np.sort(second)


def prompt_items(first: np.ndarray, labels: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` items of the first half, stratified by label row (largest-remainder quotas): the
    real images whose captions are the prompts."""
    if count >= len(first):
        return first
    rng = np.random.default_rng(seed + 1)
    rows = [tuple(r) for r in np.asarray(labels)[first]]
    groups = {value: [i for i, r in zip(first, rows) if r == value] for value in sorted(set(rows))}
    quotas = {value: count * len(members) / len(first) for value, members in groups.items()}
    take = {value: int(q) for value, q in quotas.items()}
    for value in sorted(quotas, key=lambda v: quotas[v] - take[v], reverse=True)[:count - sum(take.values())]:
        take[value] += 1
    chosen = [i for value, members in groups.items() for i in rng.choice(members, size=take[value], replace=False)]
    return np.sort(np.array(chosen, dtype=np.int64))


def scores(real_features: np.ndarray, fake_features: np.ndarray, predicted: np.ndarray,
           prompted: np.ndarray, task: str, k: int) -> dict:
    precision, recall = precision_recall(real_features, fake_features, k)
    return {"fd": frechet_distance(fake_features, real_features), "precision": precision, "recall": recall,
            "cond_acc": conditional_accuracy(predicted, prompted, task), "n": int(len(fake_features))}
