"""Likely wrong labels, and outlier and near-duplicate hints, from the pretrained network's pooled features (02).

Method: the pooled ImageNet features of every image (cached, helpers/models/features.py) are reduced to at most
64 principal components; a 5-fold stratified logistic regression gives every image probabilities from a model
that never saw it; cleanlab's confident learning (`cleanlab.filter.find_label_issues`, its default
`prune_by_noise_rate`) flags the images whose given label is unlikely, ranked by self-confidence (the
probability of the given label, lowest first). From the features themselves, cleanlab's `OutOfDistribution` scores
images far from all others (outliers), and the nearest neighbours name pairs that look almost the same
(near-duplicates), both with cleanlab Datalab's default thresholds. Outliers and near-duplicates are listed,
never acted on; flagged labels leave training only with `label_issues=exclude_train`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from helpers.data.imagecache import load_resized
from helpers.models import features as feature_store
from helpers.models.zoo import WeightsError
from helpers.params.schema import defaults
from helpers.training import frozencache
from helpers.utils import files

FOLDS = 5
# Measured on the sample with 60 labels flipped on purpose: 64 components of the standardised features at C=0.01
# reach 0.815 out-of-fold accuracy and find 55 of the 60 (C=0.1: 54, C=1: 54, with more false alarms; the lowest
# out-of-fold log loss, 0.60, of 0.001-10) in about 1 s, where all 1280 features took 100 s and did no better.
COMPONENTS = 64
REGULARISATION = 0.01  # logistic regression's C
NEIGHBOURS = 10  # cleanlab's default k for OutOfDistribution
OUTLIER_THRESHOLD = 0.37037  # Datalab's: mean neighbour distance above Q3 + (1/t - 1) * IQR is an outlier
NEAR_DUPLICATE_THRESHOLD = 0.13  # Datalab's: nearest distance below t * the median nearest distance
FALLBACK_ARCH = "efficientnet-lite0"  # its ImageNet weights install with the package, so it is always there
FREEZE_STRIDE = defaults("03_train")["freeze_stride"]  # 03's frozen units by default, whose output 02 keeps for it
ISSUE_COLUMNS = ["path", "given_label", "suggested_label", "label_quality", "rank", "split"]
MODES = ("report", "exclude_train")


@dataclass
class Findings:
    """What the search found, ready to show and to save."""

    issues: pd.DataFrame
    outliers: pd.DataFrame
    near_duplicates: pd.DataFrame
    per_class: pd.DataFrame
    method: str
    arch: str
    image_size: int
    notes: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    out_of_fold_accuracy: float | None = None


def out_of_sample_probabilities(x: np.ndarray, labels: np.ndarray, seed: int = 42,
                                folds: int = FOLDS) -> np.ndarray:
    """Each row's class probabilities from a logistic regression fitted on the other folds (stratified k-fold)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from threadpoolctl import threadpool_limits
    model = LogisticRegression(C=REGULARISATION, max_iter=1000)
    # One BLAS thread: these matrices are small, and on 2 busy cores a threaded fit took 8 s instead of 0.1 s.
    with threadpool_limits(limits=1, user_api="blas"):
        return cross_val_predict(model, x, labels, cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
                                 method="predict_proba")


def reduce(features: np.ndarray, seed: int = 42) -> np.ndarray:
    """At most COMPONENTS principal components of the standardised features (unsupervised: no label leaks).

    Standardised first, not after: scaling the components up to unit variance made noise components as loud as
    the informative ones, and on 48 images out-of-fold accuracy fell from 0.92 to 0.35."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits
    n, d = features.shape
    k = min(COMPONENTS, n - 1, d)
    with threadpool_limits(limits=1, user_api="blas"):  # 5 000 rows: 5 s on one thread, 37 s threaded on 2 busy cores
        x = StandardScaler().fit_transform(np.asarray(features, dtype=np.float32))
        return PCA(k, random_state=seed).fit_transform(x) if k < d else x


def label_issues(paths: list[str], labels: np.ndarray, splits: list[str], classes: list[str],
                 probs: np.ndarray) -> pd.DataFrame:
    """label_issues.csv's rows: the flagged images, most likely wrong first."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
    ranked = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    quality = get_label_quality_scores(labels, probs)
    rows = [{"path": paths[i], "given_label": classes[labels[i]], "suggested_label": classes[int(probs[i].argmax())],
             "label_quality": round(float(quality[i]), 6), "rank": r + 1, "split": splits[i]}
            for r, i in enumerate(ranked)]
    return pd.DataFrame(rows, columns=ISSUE_COLUMNS)


def neighbour_hints(x: np.ndarray, paths: list[str], labels: list[str], splits: list[str],
                    groups: list | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Outliers (cleanlab's OutOfDistribution) and near-duplicate pairs from the same nearest-neighbour graph."""
    from cleanlab.outlier import OutOfDistribution
    from scipy.stats import iqr
    n = len(paths)
    k = min(NEIGHBOURS, n - 1)
    ood = OutOfDistribution(params={"k": k})
    scores = ood.fit_score(features=np.ascontiguousarray(x, dtype=np.float32), verbose=False)
    distances, neighbours = ood.params["knn"].kneighbors(n_neighbors=k)  # each point's others, nearest first
    mean = distances.mean(1)
    cut = np.percentile(mean, 75) + (1 / OUTLIER_THRESHOLD - 1) * iqr(mean)
    far = np.flatnonzero(mean > cut)
    far = far[np.argsort(scores[far], kind="stable")]
    outliers = pd.DataFrame({"path": [paths[i] for i in far], "label": [labels[i] for i in far],
                             "split": [splits[i] for i in far], "outlier_score": np.round(scores[far], 6),
                             "rank": np.arange(1, len(far) + 1)})
    radius = NEAR_DUPLICATE_THRESHOLD * max(float(np.median(distances[:, 0])), 1e-12)
    pairs, seen = [], set()
    for i in np.flatnonzero(distances[:, 0] < radius):
        j = int(neighbours[i, 0])
        if (j, int(i)) in seen or (groups is not None and groups[i] == groups[j]):
            continue  # one row per pair; pairs 02 already grouped as duplicates are listed there
        seen.add((int(i), j))
        pairs.append((int(i), j, float(distances[i, 0])))
    near = pd.DataFrame([{"path": paths[i], "label": labels[i], "split": splits[i], "other": paths[j],
                          "other_label": labels[j], "other_split": splits[j], "distance": round(d, 6)}
                         for i, j, d in sorted(pairs, key=lambda t: t[2])],
                        columns=["path", "label", "split", "other", "other_label", "other_split", "distance"])
    return outliers, near


def per_class_counts(issues: pd.DataFrame, labels: list[str], classes: list[str]) -> pd.DataFrame:
    """Flagged images per given class, beside how many the class has."""
    have = pd.Series(labels).value_counts()
    flagged = issues["given_label"].value_counts()
    rows = [{"class": c, "images": int(have.get(c, 0)), "flagged": int(flagged.get(c, 0))} for c in classes]
    out = pd.DataFrame(rows, columns=["class", "images", "flagged"])
    out["share"] = (out["flagged"] / out["images"].clip(lower=1)).round(4)
    return out


def features_for(frame: pd.DataFrame, root: Path, arch: str, size: int, device: torch.device,
                 batch_size: int = 64, progress: bool = False) -> tuple[np.ndarray, str, list[str]]:
    """Pooled ImageNet features of every row (cached), of `arch` or, where its weights are absent, of Lite0."""
    image_files = [str(Path(root) / p) for p in frame["path"]]
    try:
        feats = feature_store.lookup(frame["sha256"].tolist(), arch, size)
        if feats is None and "split" in frame:
            # through the frozen units split by split: 03 then finds their output for its training and validation
            feats = frozencache.split_features(frame.assign(file=image_files), arch, size, device, FREEZE_STRIDE)
        if feats is not None:
            return feats, arch, []
        return (feature_store.cached_features(image_files, frame["sha256"].tolist(), arch, size, device, batch_size,
                                              progress=progress), arch, [])
    except WeightsError as exc:
        if arch == FALLBACK_ARCH:
            raise
        note = (f"features of {FALLBACK_ARCH}: the ImageNet weights of {arch} are not on this machine "
                f"({str(exc).split(':')[0]})")
        return (feature_store.cached_features(image_files, frame["sha256"].tolist(), FALLBACK_ARCH, size, device,
                                              batch_size, progress=progress), FALLBACK_ARCH, [note])


def search(frame: pd.DataFrame, report: dict, arch: str, size: int, device: torch.device, batch_size: int = 64,
           seed: int = 42, progress: bool = False) -> Findings:
    """Find likely wrong labels, outliers and near-duplicates among the split's images."""
    t0 = time.perf_counter()
    feats, used, notes = features_for(frame, Path(report["root"]), arch, size, device, batch_size, progress)
    t1 = time.perf_counter()
    classes = list(report["classes"])
    counts = frame["label"].value_counts()
    judged = frame["label"].map(counts).ge(2).to_numpy()  # a class of one image cannot be judged out of sample
    if not judged.all():
        notes.append(f"classes {sorted(counts[counts < 2].index)} have a single image: not judged")
    part = frame[judged]
    paths, names, splits = part["path"].tolist(), part["label"].tolist(), part["split"].tolist()
    present = [c for c in classes if c in set(names)]
    empty = Findings(pd.DataFrame(columns=ISSUE_COLUMNS), pd.DataFrame(), pd.DataFrame(),
                     per_class_counts(pd.DataFrame(columns=ISSUE_COLUMNS), frame["label"].tolist(), classes),
                     "", used, size, notes + ["too few images to judge labels out of sample"])
    if len(present) < 2 or len(part) < 2 * len(present):
        return empty
    y = np.asarray([present.index(c) for c in names])
    folds = int(min(FOLDS, counts[present].min()))
    x = reduce(feats[judged], seed)
    probs = out_of_sample_probabilities(x, y, seed, folds)
    issues = label_issues(paths, y, splits, present, probs)
    t2 = time.perf_counter()
    groups = part["dup_group"].tolist() if "dup_group" in part else None
    # The neighbour graph on the features themselves, as Datalab takes embeddings: on the 64 components every
    # sandal of the sample had a "near-duplicate" (the components crowd a class); on the features none had.
    outliers, near = neighbour_hints(feats[judged], paths, names, splits, groups)
    t3 = time.perf_counter()
    dims = x.shape[1]
    method = (f"cleanlab {_version()} find_label_issues (confident learning, prune_by_noise_rate, ranked by "
              f"self-confidence) on out-of-sample probabilities of a {folds}-fold logistic regression over {dims} "
              f"principal components of {used}'s standardised pooled ImageNet features at {size}px; outliers: "
              "cleanlab OutOfDistribution on the features (cosine, 10 neighbours); near-duplicates: nearest neighbours "
              "closer than 0.13 of the median nearest distance")
    return Findings(issues, outliers, near, per_class_counts(issues, frame["label"].tolist(), classes), method,
                    used, size, notes, {"features": round(t1 - t0, 2), "labels": round(t2 - t1, 2),
                                        "hints": round(t3 - t2, 2)},
                    round(float((probs.argmax(1) == y).mean()), 4))


def _version() -> str:
    import cleanlab
    return cleanlab.__version__


def to_exclude(issues: pd.DataFrame, frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The flagged training images to leave out; a class never loses all its training images (noted instead)."""
    flagged = issues[issues["split"] == "train"]
    train = frame[frame["split"] == "train"]["label"].value_counts()
    would = flagged["given_label"].value_counts()
    kept = sorted(c for c, n in would.items() if n >= train.get(c, 0))
    notes = [f"class {c!r}: every training image was flagged; none left out, check this class by hand"
             for c in kept]
    return flagged[~flagged["given_label"].isin(kept)], notes


def summary(findings: Findings, mode: str, frame: pd.DataFrame) -> dict:
    """data_report.json's `label_issues` section: method, counts by class and split, what was excluded."""
    if mode not in MODES:
        raise ValueError(f"label_issues={mode!r}: use report or exclude_train.")
    issues, notes = findings.issues, list(findings.notes)
    excluded = issues.iloc[:0]
    if mode == "exclude_train":
        excluded, more = to_exclude(issues, frame)
        notes += more
    return {"mode": mode, "method": findings.method, "arch": findings.arch, "image_size": findings.image_size,
            "n_flagged": int(len(issues)), "out_of_fold_accuracy": findings.out_of_fold_accuracy,
            "per_class": {r["class"]: {"images": r["images"], "flagged": r["flagged"]}
                          for r in findings.per_class.to_dict("records")},
            "by_split": {s: int(n) for s, n in issues["split"].value_counts().sort_index().items()},
            "excluded": [{"path": r["path"], "label": r["given_label"], "split": r["split"]}
                         for r in excluded.to_dict("records")],
            "outliers": findings.outliers.head(50).to_dict("records"), "n_outliers": int(len(findings.outliers)),
            "near_duplicates": findings.near_duplicates.head(50).to_dict("records"),
            "n_near_duplicates": int(len(findings.near_duplicates)),
            "notes": notes, "seconds": findings.seconds}


def save(run_dir: Path, frame: pd.DataFrame, report: dict, findings: Findings, mode: str) -> dict:
    """Write label_issues.csv and the report's `label_issues` section (data_report.json); return the report."""
    report = {**report, "label_issues": summary(findings, mode, frame)}
    files.write_csv(Path(run_dir) / "label_issues.csv", findings.issues[ISSUE_COLUMNS])
    files.write_json(Path(run_dir) / "data_report.json", report)
    return report


def gallery(findings: Findings, root: Path, k: int = 16, size: int = 96) -> tuple[list[np.ndarray], list[str]]:
    """The `k` most likely wrong labels as images, titled given → suggested (label quality)."""
    top = findings.issues.head(k)
    images = [load_resized(Path(root) / p, size) for p in top["path"]]
    titles = [f"{g} → {s} ({q:.2f})" for g, s, q in zip(top["given_label"], top["suggested_label"],
                                                          top["label_quality"])]
    return images, titles
