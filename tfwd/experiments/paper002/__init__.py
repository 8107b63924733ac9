"""Entries of paper 002, "Exploring curvature noise in large-batch stochastic optimization"
(ICLR 2019 submission): figures 1-2 (convex quadratic), figure 3 (a-d) and tables 1-3
(docs/equations.md §5, §6, §8, §9).

One module per family of entries: ``quadratic`` (figures 1-2 and their plots), ``fig3``
(figure 3), ``tables`` (tables 1-3; ``searched`` adds table 1's sections at the mnist_paper
scale); ``regimes`` is the run policy they share.
"""
from tfwd.experiments.paper002.fig3 import FIG3
from tfwd.experiments.paper002.quadratic import FIG1_2
from tfwd.experiments.paper002.tables import TABLE1, TABLE2, TABLE3

# In the paper's order.
EXPERIMENTS = (FIG1_2, FIG3, TABLE1, TABLE2, TABLE3)
