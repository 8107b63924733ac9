"""Entries of paper 000, "Three Mechanisms of Weight Decay Regularization" (Zhang, Wang, Xu,
Grosse; ICLR 2019): tables 1-3 and figures 1-9 (docs/equations.md §2, §4, §7, §9).

One module per family of entries: ``accuracy`` (table 1, figures 1, 2, 6), ``normalization``
(figures 3-4, §4.1), ``jacobian`` (figure 5, table 2, §4.2), ``damping`` (figure 7, §4.3),
``large_batch`` (table 3, figures 8-9, appendix G); ``runs`` is the run policy they share,
``common`` their shared report pieces.
"""
from tfwd.experiments.paper000.accuracy import FIG1, FIG2, FIG6, TABLE1
from tfwd.experiments.paper000.damping import FIG7
from tfwd.experiments.paper000.jacobian import FIG5, TABLE2
from tfwd.experiments.paper000.large_batch import FIG8_9, TABLE3
from tfwd.experiments.paper000.normalization import FIG3, FIG4

# In the paper's order.
EXPERIMENTS = (TABLE1, FIG1, FIG2, FIG3, FIG4, FIG5, TABLE2, FIG6, FIG7, TABLE3, FIG8_9)
