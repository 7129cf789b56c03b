"""The sizes of the distinct-count sketches every layer writes and reads (Spark, Pinot rows, the API's unions).

Here, not in lakepulse.aggregations, so that readers of the sketches (the metrics API) need no Spark import.
"""

from typing import Final

# HLL: relative standard error ≈ 1.04 / sqrt(2**12) ≈ 1.6 % once a sketch leaves its exact list/set modes.
HLL_LG_CONFIG_K: Final = 12
# Theta: exact while a (merged) sketch holds fewer than 2**12 = 4,096 distinct values, then ≈ 1.6 %.
THETA_LG_NOM_ENTRIES: Final = 12
