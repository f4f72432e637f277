"""
Synthetic rows: do they keep the table's pair correlations?
===========================================================

A synthetic copy of a table is useful when the relations between its columns survive.
Here scikit-learn's wine table (13 measurements of 178 wines and their cultivar, a
categorical column) is fitted by the recommended call for synthetic tables,
``GaussianMixtureDensity(n_components="auto", level_groups="auto")`` (the size chosen
on held-out rows, numbers read on normal scores, dependent discrete columns in joint
tables; here there is one discrete column, so no group), and as many synthetic rows are
drawn with ``sample``. The left panel plots every pair's
correlation in the synthetic rows against the same pair in the real ones: on the
diagonal means kept. The right panel draws rows *given* a cultivar
(``sample(given={"cultivar": ...})``, the model's exact conditional, no rejection) and
compares their means with the real rows of that cultivar.

The rows come back as the user's DataFrame: the cultivar a ``category`` with its
levels, every number within the range seen in the training rows and written with the
decimals the data have (``bounds="observed"``, the default).
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.datasets import load_wine

from skgenerative import GaussianMixtureDensity

data = load_wine(as_frame=True)
table = data.data.copy()
table["cultivar"] = pd.Categorical.from_codes(data.target, ["barolo", "grignolino", "barbera"])

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # a small table: EM may stop before tol
    model = GaussianMixtureDensity(n_components="auto", level_groups="auto", random_state=0).fit(table)
print(f"{model.n_components_} components chosen")
synthetic = model.sample(len(table), random_state=0)
print(synthetic.dtypes.equals(table.dtypes), synthetic.head(3), sep="\n")

numbers = table.columns[:-1]
upper = np.triu_indices(len(numbers), k=1)
real_corr = table[numbers].corr().to_numpy()[upper]
synthetic_corr = synthetic[numbers].corr().to_numpy()[upper]

given = model.sample(500, random_state=1, given={"cultivar": "barbera"})
real_barbera = table[table["cultivar"] == "barbera"]
scale = table[numbers].std()

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.5))
left.scatter(real_corr, synthetic_corr, s=12)
left.plot([-1, 1], [-1, 1], color="grey", lw=1)
left.set(xlabel="correlation in the real rows", ylabel="correlation in the synthetic rows",
         title=f"{len(real_corr)} column pairs, mean |difference| "
               f"{np.mean(np.abs(real_corr - synthetic_corr)):.2f}")
position = np.arange(len(numbers))
right.barh(position + 0.2, (real_barbera[numbers].mean() - table[numbers].mean()) / scale, 0.4,
           label="real barbera rows")
right.barh(position - 0.2, (given[numbers].mean() - table[numbers].mean()) / scale, 0.4,
           label='sample(given={"cultivar": "barbera"})')
right.set_yticks(position, numbers, fontsize=7)
right.set(xlabel="mean, in standard deviations from the table's mean", title="Conditional rows")
right.legend(fontsize=7, loc="lower left")
fig.tight_layout()
plt.show()
