"""The fraud model's artifact, and the model it holds (``service_layer.ports.FraudModel``).

An artifact is two files side by side: a manifest (JSON: format, version, the
model file's name and SHA-256, the features in order, how it was trained and
what it scored on held-out data) and the LightGBM model as text. Payments
loads it at start (``PAYMENTS_FRAUD_MODEL_FILE`` names the manifest) and
refuses to start on anything it cannot trust: a file missing or unreadable, a
digest that differs, features other than ``risk_score.FEATURES``, a model
LightGBM cannot read or with another number of features.

Scoring asks LightGBM for per-feature contributions (SHAP values, in log-odds)
with ``pred_contrib=True``; their sum is the model's raw score, so one call
gives both the probability and its explanation.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from payments.domain.risk_score import FEATURES, RiskScore, top_contributions

FORMAT = "astra-fraud-model/1"


class FraudModelError(RuntimeError):
    """The artifact cannot be used: payments does not start with it."""


@dataclass(frozen=True, slots=True)
class Manifest:
    version: str
    model_file: str
    sha256: str
    features: tuple[str, ...]
    # How it was trained and evaluated (seed, parameters, rows, metrics): for people.
    training: Mapping[str, Any]

    @property
    def model_version(self) -> str:
        """What a decision records: the version and the start of the model's digest."""
        return f"{self.version}+{self.sha256[:12]}"

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "model_file": self.model_file,
                "sha256": self.sha256,
                "features": list(self.features),
                "training": dict(self.training),
            },
            indent=2,
            sort_keys=True,
        )


def read_manifest(path: Path) -> Manifest:
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise FraudModelError(f"fraud model manifest {path}: cannot be read ({error})") from None
    except ValueError as error:
        raise FraudModelError(f"fraud model manifest {path}: not JSON ({error})") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise FraudModelError(f"fraud model manifest {path}: not a {FORMAT} manifest")
    try:
        manifest = Manifest(
            version=str(body["version"]),
            model_file=str(body["model_file"]),
            sha256=str(body["sha256"]),
            features=tuple(str(f) for f in body["features"]),
            training=dict(body.get("training") or {}),
        )
    except (KeyError, TypeError) as error:
        raise FraudModelError(f"fraud model manifest {path}: field missing ({error})") from None
    if not manifest.version or len(manifest.model_version) > 64:
        raise FraudModelError(f"fraud model manifest {path}: version empty or too long")
    if Path(manifest.model_file).name != manifest.model_file:
        raise FraudModelError(
            f"fraud model manifest {path}: model_file must name a file beside the manifest"
        )
    return manifest


class LightGbmFraudModel:
    """A LightGBM booster with the manifest it was checked against."""

    def __init__(self, booster: Any, manifest: Manifest) -> None:
        self._booster = booster
        self._manifest = manifest
        # One prediction at a time: the booster is shared by the creation workers.
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        return self._manifest.model_version

    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @classmethod
    def load(cls, path: str | Path) -> LightGbmFraudModel:
        """The model of the artifact whose manifest is ``path``; ``FraudModelError`` saying
        what is wrong when it cannot be trusted."""
        manifest_path = Path(path)
        manifest = read_manifest(manifest_path)
        if manifest.features != FEATURES:
            raise FraudModelError(
                f"fraud model {manifest_path}: trained on features {list(manifest.features)}, "
                f"payments computes {list(FEATURES)}; retrain the model for this version"
            )
        model_path = manifest_path.parent / manifest.model_file
        try:
            text = model_path.read_bytes()
        except OSError as error:
            raise FraudModelError(f"fraud model {model_path}: cannot be read ({error})") from None
        digest = hashlib.sha256(text).hexdigest()
        if digest != manifest.sha256:
            raise FraudModelError(
                f"fraud model {model_path}: SHA-256 {digest} differs from the manifest's "
                f"{manifest.sha256} (corrupt, or not the model the manifest describes)"
            )
        import lightgbm

        try:
            booster = lightgbm.Booster(model_str=text.decode("utf-8"))
        except (lightgbm.basic.LightGBMError, UnicodeDecodeError, ValueError) as error:
            raise FraudModelError(
                f"fraud model {model_path}: not a LightGBM model ({error})"
            ) from None
        if booster.num_feature() != len(FEATURES):
            raise FraudModelError(
                f"fraud model {model_path}: has {booster.num_feature()} features, "
                f"payments computes {len(FEATURES)}"
            )
        return cls(booster, manifest)

    def score(self, features: Sequence[float]) -> RiskScore:
        (scores,) = self.score_many([features])
        return scores

    def score_many(self, rows: Sequence[Sequence[float]]) -> list[RiskScore]:
        import numpy as np

        matrix = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURES))
        with self._lock:
            contributions = self._booster.predict(matrix, pred_contrib=True, num_threads=1)
        scores = []
        for values, row in zip(matrix, contributions, strict=True):
            # The last column is the model's base value; with the others it sums to the logit.
            logit = float(row.sum())
            probability = _sigmoid(logit)
            scores.append(
                RiskScore(
                    self.version,
                    probability,
                    top_contributions(values.tolist(), row[:-1].tolist()),
                )
            )
        return scores


def _sigmoid(logit: float) -> float:
    """1 / (1 + e^-x) without overflow at either end."""
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    power = math.exp(logit)
    return power / (1.0 + power)
