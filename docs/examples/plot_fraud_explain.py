"""
Which transactions look like fraud, and why
===========================================

A synthetic card-transaction table (pandas): the log of the amount, the log of the
customer's usual amount, the hour, the distance from home, the number of transactions in the last 24 hours and
the age of the account. Normal rows tie the columns together (amounts near the usual
amount, long distances with more transactions); a few planted frauds break exactly one
of those ties each: an amount far above the usual one, a burst of transactions, a
purchase far from home at night.

:class:`~skgenerative.GenerativeOutlierDetector` with ``calibration=0.2`` learns the
table (training rows hold some fraud too), gives each new row a conformal p-value
(how often a normal row scores as low), and :meth:`~skgenerative.GenerativeOutlierDetector.explain`
says, per flagged row, which column is least likely given the others:
``log p(x_j | rest of the row)``, lower = more surprising.
"""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from skgenerative import GenerativeOutlierDetector

rng = np.random.RandomState(0)


def transactions(n):
    usual = rng.normal(3.5, 0.6, n)  # log of the customer's typical amount
    distance = rng.lognormal(1.5, 0.8, n)
    return pd.DataFrame({
        "log_amount": usual + rng.normal(0.0, 0.15, n),
        "log_usual_amount": usual,
        "hour": np.clip(rng.normal(14, 3.0, n), 0, 23.99),
        "log_distance_km": np.log(distance),
        "tx_24h": np.log1p(rng.poisson(2 + distance / 4)) + rng.uniform(0, 0.1, n),
        "account_age_years": rng.gamma(4.0, 1.5, n),
    })


def plant(frame, kinds):
    """Each row gets one kind of fraud: one column replaced by a value plausible on its own."""
    frame = frame.copy()
    for i, kind in zip(frame.index, kinds):
        if kind == "log_amount":  # an ordinary amount, but five times this customer's
            frame.loc[i, "log_amount"] = frame.loc[i, "log_usual_amount"] + np.log(5.0)
        elif kind == "tx_24h":  # card testing: a burst of transactions close to home
            frame.loc[i, "tx_24h"] = np.log1p(14)
            frame.loc[i, "log_distance_km"] = np.log(1.0)
        elif kind == "hour":  # three in the morning
            frame.loc[i, "hour"] = 3.0
    return frame


kinds = np.array(["log_amount", "tx_24h", "hour"])
train = transactions(4000)
fraud_in_train = rng.choice(len(train), 40, replace=False)
train = pd.concat([train.drop(fraud_in_train),
                   plant(train.loc[fraud_in_train], rng.choice(kinds, 40))])

new = transactions(1000)
planted = rng.choice(len(new), 15, replace=False)
truth = pd.Series("", index=new.index)
truth[planted] = rng.choice(kinds, len(planted))
new.loc[planted] = plant(new.loc[planted], truth[planted])

detector = GenerativeOutlierDetector(contamination=0.01, calibration=0.2, random_state=0).fit(train)
p = pd.Series(detector.p_values(new), index=new.index)
flagged = p[detector.predict(new) == -1].sort_values().index
print(f"{len(flagged)} of {len(new)} new rows flagged at p <= 0.01; "
      f"{(truth[flagged] != '').sum()} of them planted, {(truth != '').sum()} planted in all")

explanation = detector.explain(new.loc[flagged])
report = pd.DataFrame({
    "p_value": p[flagged].round(4),
    "planted": truth[flagged],
    "most surprising": explanation.idxmin(axis=1),
    "then": explanation.apply(lambda row: row.nsmallest(2).index[-1], axis=1),
})
print(report.to_string())
planted_flagged = report[report.planted != ""]
# a burst of transactions close to home: the count or the distance may carry the blame
agrees = (planted_flagged["most surprising"] == planted_flagged.planted) | (
    (planted_flagged.planted == "tx_24h") & (planted_flagged["most surprising"] == "log_distance_km"))
print(f"the planted column ranks first in {agrees.sum()} of {len(planted_flagged)} flagged frauds")

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 1.6]})
left.hist(p[truth == ""], bins=20, range=(0, 1), color="tab:blue", alpha=0.7, label="normal rows")
left.hist(p[truth != ""], bins=20, range=(0, 1), color="tab:red", alpha=0.9, label="planted fraud")
left.set_xlabel("conformal p-value")
left.set_ylabel("rows")
left.set_title("New rows: normal ones spread evenly, fraud near 0")
left.legend()

shown = explanation.iloc[:12]
image = right.imshow(shown.to_numpy(), cmap="magma", aspect="auto")
right.set_xticks(range(shown.shape[1]), shown.columns, rotation=30, ha="right")
right.set_yticks(range(len(shown)), [f"row {i} ({truth[i] or 'not planted'})" for i in shown.index])
right.set_title("log p(column | rest of row), flagged rows (dark = surprising)")
fig.colorbar(image, ax=right)
fig.tight_layout()
plt.show()
