"""The learned fraud score: training is reproducible from its seed, the committed artifact is
what its seed trains, and an artifact that cannot be trusted is refused with a clear error."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from payments.adapters.fraud_model import FraudModelError, LightGbmFraudModel, read_manifest
from payments.domain.risk_score import FEATURES
from payments.risk_training import train
from payments.risk_training.dataset import generate

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "services/payments/models/fraud-model.json"


def small(seed: int) -> train.Trained:
    return train.train(seed, rows=2_000, rounds=15)


def test_retraining_from_the_same_seed_gives_the_same_model_and_scores() -> None:
    first, again, other = small(11), small(11), small(12)
    assert first.model_text == again.model_text
    probe = generate(99, 300).features
    first_scores = first.booster.predict(probe, num_threads=1)
    assert np.array_equal(first_scores, again.booster.predict(probe, num_threads=1))
    # The seed matters: another one draws other payments and trains another model.
    assert other.sha256 != first.sha256
    assert not np.array_equal(first_scores, other.booster.predict(probe, num_threads=1))


def test_the_committed_artifact_is_what_its_seed_trains() -> None:
    manifest = read_manifest(COMMITTED)
    recipe = manifest.training
    assert recipe["library"].startswith("lightgbm ")
    retrained = train.train(
        int(recipe["seed"]), int(recipe["rows"]), int(recipe["rounds"]), recipe["review_threshold"]
    )
    assert retrained.sha256 == manifest.sha256
    loaded = LightGbmFraudModel.load(COMMITTED)
    probe = generate(5, 200).features
    scores = [s.score for s in loaded.score_many(probe.tolist())]
    assert np.allclose(scores, retrained.booster.predict(probe, num_threads=1), rtol=0, atol=1e-12)
    # What it scored on held-out payments is recorded with it, and is no coin toss.
    evaluation = recipe["evaluation"]
    assert evaluation == retrained.evaluation.as_dict()
    assert evaluation["roc_auc"] > 0.8
    assert evaluation["precision_at_review"] > 0.5


def test_the_evaluation_figures_are_computed_as_defined() -> None:
    labels = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.8, 0.9])
    # Pairs (fraud, ordinary) ranked right: 0.35>0.1; 0.8>0.1,0.4, tie with 0.8; 0.9>all.
    assert train.roc_auc(labels, scores) == pytest.approx((1 + 2.5 + 3) / 9)
    figures = train.evaluate(labels, scores, 0.5)
    assert (figures.flagged, figures.precision, figures.recall) == (3, 2 / 3, 2 / 3)


def test_a_score_explains_itself_with_the_features_that_moved_it() -> None:
    model = LightGbmFraudModel.load(COMMITTED)
    risky = [3.5, 1.0, 3.0, 9.0, 3.6, 3.0, 1.0, 6.0, 0.95]
    ordinary = [1.5, 0.0, 900.0, 1.0, 1.6, 14.0, 0.0, 0.0, 0.0]
    high, low = model.score(risky), model.score(ordinary)
    assert high.score > 0.9 > 0.1 > low.score
    assert high.model_version == model.version == f"fraud-2026.12+{model.manifest.sha256[:12]}"
    assert len(high.top) == 3
    assert {c.feature for c in high.top} <= set(FEATURES)
    # The contributions are the model's own: with the base value they sum to its logit.
    contributions = model._booster.predict(np.array([risky]), pred_contrib=True)[0]
    assert high.top[0].contribution == pytest.approx(max(contributions[:-1], key=abs))


def artifact_copy(tmp_path: Path) -> Path:
    for name in ("fraud-model.json", "fraud-model.lgb.txt"):
        shutil.copy(COMMITTED.parent / name, tmp_path / name)
    return tmp_path / "fraud-model.json"


def rewrite_manifest(path: Path, **changes: object) -> None:
    body = json.loads(path.read_text())
    body.update(changes)
    path.write_text(json.dumps(body))


def test_a_corrupt_model_is_refused(tmp_path: Path) -> None:
    manifest = artifact_copy(tmp_path)
    model = tmp_path / "fraud-model.lgb.txt"
    text = model.read_bytes()
    model.write_bytes(text.replace(b"leaf_value=", b"leaf_value=1", 1))
    with pytest.raises(FraudModelError, match=r"SHA-256 .* differs from the manifest"):
        LightGbmFraudModel.load(manifest)


def test_a_model_for_other_features_is_refused(tmp_path: Path) -> None:
    manifest = artifact_copy(tmp_path)
    rewrite_manifest(manifest, features=[*FEATURES[:-1], "something_else"])
    with pytest.raises(FraudModelError, match="retrain the model"):
        LightGbmFraudModel.load(manifest)


def test_a_file_that_is_no_lightgbm_model_is_refused_even_with_its_digest(tmp_path: Path) -> None:
    manifest = artifact_copy(tmp_path)
    bogus = b"tree\nthis is not a model\n"
    (tmp_path / "fraud-model.lgb.txt").write_bytes(bogus)
    rewrite_manifest(manifest, sha256=hashlib.sha256(bogus).hexdigest())
    with pytest.raises(FraudModelError, match="not a LightGBM model"):
        LightGbmFraudModel.load(manifest)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not JSON"),
        ('{"format": "something/2"}', "not a astra-fraud-model/1 manifest"),
        ('{"format": "astra-fraud-model/1", "version": "v"}', "field missing"),
    ],
)
def test_a_broken_manifest_is_refused(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "fraud-model.json"
    path.write_text(content)
    with pytest.raises(FraudModelError, match=message):
        LightGbmFraudModel.load(path)


def test_missing_files_and_paths_outside_the_folder_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FraudModelError, match="cannot be read"):
        LightGbmFraudModel.load(tmp_path / "absent.json")
    manifest = artifact_copy(tmp_path)
    rewrite_manifest(manifest, model_file="../elsewhere.txt")
    with pytest.raises(FraudModelError, match="beside the manifest"):
        LightGbmFraudModel.load(manifest)
    rewrite_manifest(manifest, model_file="gone.txt")
    with pytest.raises(FraudModelError, match="cannot be read"):
        LightGbmFraudModel.load(manifest)
