"""Train the fraud model from a seed, evaluate it on held-out payments, save the artifact.

    python -m payments.risk_training.train --seed 7 --out services/payments/models

Single-threaded and deterministic (LightGBM's ``deterministic``, ``force_row_wise``,
one thread, seeded): the same seed, size and library version give the same model,
byte for byte, and so the same scores. Prints held-out ROC AUC and the precision
(and recall) at the review threshold, and writes the model (LightGBM text) and its
manifest (version, SHA-256, features, how it was trained, those figures).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np

from payments.adapters.fraud_model import Manifest
from payments.domain.risk_score import FEATURES
from payments.risk_training.dataset import DataSet, generate

MANIFEST_NAME = "fraud-model.json"
MODEL_NAME = "fraud-model.lgb.txt"
DEFAULT_VERSION = "fraud-2026.12"
DEFAULT_ROWS = 40_000
DEFAULT_ROUNDS = 80
HELD_OUT_SHARE = 0.2


def parameters(seed: int) -> dict[str, Any]:
    return {
        "objective": "binary",
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_data_in_leaf": 40,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": 1,
        "seed": seed,
        "verbose": -1,
    }


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """The probability that a random fraud scores above a random ordinary payment (ties: half)."""
    positives = int(labels.sum())
    negatives = int(labels.shape[0]) - positives
    if not positives or not negatives:
        raise ValueError("ROC AUC needs both classes")
    # 1-based ranks, tied scores sharing their average rank.
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2)[inverse]
    return float(
        (ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives)
    )


@dataclass(frozen=True)
class Evaluation:
    auc: float
    precision: float
    recall: float
    flagged: int
    held_out: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "held_out_rows": self.held_out,
            "roc_auc": round(self.auc, 6),
            "precision_at_review": round(self.precision, 6),
            "recall_at_review": round(self.recall, 6),
            "flagged_at_review": self.flagged,
        }


def evaluate(labels: np.ndarray, scores: np.ndarray, review: float) -> Evaluation:
    flagged = scores >= review
    hits = int((flagged & (labels == 1)).sum())
    count = int(flagged.sum())
    return Evaluation(
        auc=roc_auc(labels, scores),
        precision=hits / count if count else 0.0,
        recall=hits / int(labels.sum()),
        flagged=count,
        held_out=int(labels.shape[0]),
    )


@dataclass(frozen=True)
class Trained:
    model_text: str
    evaluation: Evaluation
    booster: Any

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.model_text.encode()).hexdigest()


def split(data: DataSet, seed: int) -> tuple[DataSet, DataSet]:
    order = np.random.default_rng(seed + 1).permutation(data.rows)
    cut = int(data.rows * (1 - HELD_OUT_SHARE))
    train, test = order[:cut], order[cut:]
    return (
        DataSet(data.features[train], data.labels[train]),
        DataSet(data.features[test], data.labels[test]),
    )


def train(
    seed: int, rows: int = DEFAULT_ROWS, rounds: int = DEFAULT_ROUNDS, review: float = 0.5
) -> Trained:
    training, held_out = split(generate(seed, rows), seed)
    dataset = lightgbm.Dataset(
        training.features,
        training.labels,
        feature_name=list(FEATURES),
        params={"verbose": -1},
        free_raw_data=False,
    )
    booster = lightgbm.train(parameters(seed), dataset, num_boost_round=rounds)
    scores = np.asarray(booster.predict(held_out.features, num_threads=1), dtype=np.float64)
    return Trained(booster.model_to_string(), evaluate(held_out.labels, scores, review), booster)


def save(
    trained: Trained, out: Path, *, version: str, seed: int, rows: int, rounds: int, review: float
) -> Manifest:
    out.mkdir(parents=True, exist_ok=True)
    (out / MODEL_NAME).write_text(trained.model_text, encoding="utf-8")
    manifest = Manifest(
        version=version,
        model_file=MODEL_NAME,
        sha256=trained.sha256,
        features=FEATURES,
        training={
            "command": f"python -m payments.risk_training.train --seed {seed} --rows {rows} "
            f"--rounds {rounds} --review {review} --version {version}",
            "library": f"lightgbm {lightgbm.__version__}",
            "seed": seed,
            "rows": rows,
            "rounds": rounds,
            "parameters": parameters(seed),
            "review_threshold": review,
            "evaluation": trained.evaluation.as_dict(),
        },
    )
    (out / MANIFEST_NAME).write_text(manifest.to_json() + "\n", encoding="utf-8")
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m payments.risk_training.train", description=__doc__
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    parser.add_argument("--review", type=float, default=0.5, help="the review threshold evaluated")
    parser.add_argument("--version", default=DEFAULT_VERSION)
    parser.add_argument("--out", type=Path, required=True, help="folder of the artifact")
    args = parser.parse_args(argv)
    trained = train(args.seed, args.rows, args.rounds, args.review)
    manifest = save(
        trained,
        args.out,
        version=args.version,
        seed=args.seed,
        rows=args.rows,
        rounds=args.rounds,
        review=args.review,
    )
    figures = trained.evaluation
    print(
        json.dumps(
            {
                "model_version": manifest.model_version,
                "sha256": manifest.sha256,
                "manifest": str(args.out / MANIFEST_NAME),
                **figures.as_dict(),
            }
        )
    )
    print(
        f"held-out ROC AUC {figures.auc:.4f}; at the review threshold {args.review}: "
        f"precision {figures.precision:.4f}, recall {figures.recall:.4f} "
        f"({figures.flagged} of {figures.held_out} held-out payments flagged)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
