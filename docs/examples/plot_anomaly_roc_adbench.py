"""
Anomaly scores and ROC curves in a pipeline
===========================================

ADBench's *cardio* data (cardiotocography, 21 features, about 10% anomalies) with
ADBench's protocol: a stratified 70/30 split, MinMax scaling fitted on the (contaminated)
training part, detectors with default parameters. Each skgenerative model sits in a
``Pipeline`` behind :class:`~skgenerative.GenerativeOutlierDetector`, so the pipeline
itself predicts -1/+1; its ``decision_function`` ranks rows for the ROC curve.

The data come from ``../shared/data/adbench`` (or ``$SKGENERATIVE_ADBENCH``); without
them the example falls back to scikit-learn's breast cancer data with the malignant
tumours as the rare class.
"""

import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler

from skgenerative import GenerativeOutlierDetector, PPCADensity, VariationalAutoencoder

folders = [Path(os.environ["SKGENERATIVE_ADBENCH"])] if "SKGENERATIVE_ADBENCH" in os.environ else []
folders += [parent / "shared" / "data" / "adbench" for parent in Path.cwd().resolve().parents]
found = [path for folder in folders if folder.is_dir() for path in sorted(folder.glob("*_cardio.npz"))]
if found:
    data = np.load(found[0])
    X, y, name = data["X"], data["y"].astype(int), "ADBench cardio"
else:
    cancer = load_breast_cancer()
    rng = np.random.RandomState(0)
    malignant = np.flatnonzero(cancer.target == 0)
    keep = np.r_[np.flatnonzero(cancer.target == 1), rng.choice(malignant, 35, replace=False)]
    X, y, name = cancer.data[keep], (cancer.target[keep] == 0).astype(int), "breast cancer (fallback)"
print(f"data: {name}, {X.shape[0]} rows, {y.mean():.1%} anomalies")

X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=1)
detectors = {
    "GenerativeOutlierDetector (default)": make_pipeline(MinMaxScaler(), GenerativeOutlierDetector()),
    "VAE in GenerativeOutlierDetector": make_pipeline(
        MinMaxScaler(), GenerativeOutlierDetector(VariationalAutoencoder(random_state=0))),
    "PPCA in GenerativeOutlierDetector": make_pipeline(MinMaxScaler(), GenerativeOutlierDetector(PPCADensity())),
    "IsolationForest": make_pipeline(MinMaxScaler(), IsolationForest(random_state=0)),
}

fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
for label, pipe in detectors.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X_train)
    anomaly_score = -pipe.decision_function(X_test)
    fpr, tpr, _ = roc_curve(y_test, anomaly_score)
    auc = roc_auc_score(y_test, anomaly_score)
    right.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    flagged = pipe.predict(X_test) == -1
    print(f"{label}: AUCROC {auc:.3f}, flags {flagged[y_test == 1].mean():.0%} of anomalies "
          f"and {flagged[y_test == 0].mean():.0%} of normal rows")

pipe = detectors["GenerativeOutlierDetector (default)"]
scores = pipe.score_samples(X_test)
bins = np.linspace(np.percentile(scores, 1), scores.max(), 40)
left.hist(scores[y_test == 0], bins=bins, alpha=0.6, label="normal", density=True)
left.hist(scores[y_test == 1], bins=bins, alpha=0.6, label="anomaly", density=True)
left.axvline(pipe[-1].offset_, color="k", ls="--", label="threshold (offset_)")
left.set(title=f"log-density under the default detector ({name})", xlabel="score_samples")
left.legend()
right.plot([0, 1], [0, 1], color="grey", lw=0.5)
right.set(title="ROC on the test part", xlabel="false positive rate", ylabel="true positive rate")
right.legend(fontsize=7)
fig.tight_layout()
plt.show()
