"""The published numbers and claims of the two seed papers, as data.

Accuracies are in percent, read from the papers' tables and text (where the extracted text
lost a table's layout, the reading is noted) and from the authors' published configurations
(docs/equations.md §9).
"""
from __future__ import annotations

from tfwd.choices.data import Dataset
from tfwd.choices.models import Architecture
from tfwd.choices.optimizers import Optimizer
from tfwd.choices.regimes import RegimeName as _R

# Short names for the tables below.
_SGD, _ADAM, _KFAC_F, _KFAC_G = Optimizer.SGD, Optimizer.ADAM, Optimizer.KFAC_F, Optimizer.KFAC_G
_MNIST, _FASHION_MNIST = Dataset.MNIST, Dataset.FASHION_MNIST
_CIFAR10, _CIFAR100 = Dataset.CIFAR10, Dataset.CIFAR100
_MLP, _LENET, _ALEXNET = Architecture.MLP, Architecture.LENET, Architecture.ALEXNET
_VGG16, _RESNET32, _RESNET44 = Architecture.VGG16, Architecture.RESNET32, Architecture.RESNET44
# Paper 002's ResNet44 of twice the width (its CIFAR-100 rows): tfwd.models' resnet44 with
# width_factor=2 (tfwd.experiments.settings.PAPER_MODEL_KWARGS).
RESNET44_X2 = "resnet44x2"

# ----------------------------------------------------------------- paper 000 (Zhang et al. 2019)

OPTIMIZERS_000 = (_SGD, _ADAM, _KFAC_F, _KFAC_G)

# Table 1: (dataset, model, batch_norm, augment) -> {optimizer: (without decay, with decay)}.
# The middle row of each CIFAR-10 block has one check mark whose column (BN or augmentation)
# the text extraction lost; it is read as "BN, no augmentation", the setting of the authors'
# published KFAC-G VGG16 configuration (docs/equations.md §9 table).
TABLE1_000 = {
    (_CIFAR10, _VGG16, False, False): {
        _SGD: (83.20, 84.87), _ADAM: (83.16, 84.12),
        _KFAC_F: (85.58, 89.60), _KFAC_G: (83.85, 89.81)},
    (_CIFAR10, _VGG16, True, False): {
        _SGD: (86.99, 88.85), _ADAM: (88.45, 88.72),
        _KFAC_F: (87.97, 89.02), _KFAC_G: (88.17, 89.77)},
    (_CIFAR10, _VGG16, True, True): {
        _SGD: (91.71, 93.39), _ADAM: (92.89, 93.62),
        _KFAC_F: (93.12, 93.90), _KFAC_G: (93.19, 93.80)},
    (_CIFAR10, _RESNET32, False, False): {
        _SGD: (85.47, 86.63), _ADAM: (84.43, 87.54),
        _KFAC_F: (86.82, 90.22), _KFAC_G: (85.24, 90.64)},
    (_CIFAR10, _RESNET32, True, False): {
        _SGD: (86.13, 90.65), _ADAM: (89.46, 90.61),
        _KFAC_F: (89.78, 91.24), _KFAC_G: (89.94, 90.91)},
    (_CIFAR10, _RESNET32, True, True): {
        _SGD: (92.95, 95.14), _ADAM: (93.63, 94.66),
        _KFAC_F: (93.80, 95.35), _KFAC_G: (93.44, 95.04)},
    (_CIFAR100, _VGG16, True, True): {
        _SGD: (68.42, 73.31), _ADAM: (69.88, 74.22),
        _KFAC_F: (71.05, 73.36), _KFAC_G: (67.46, 73.57)},
    (_CIFAR100, _RESNET32, True, True): {
        _SGD: (73.61, 77.73), _ADAM: (73.60, 77.40),
        _KFAC_F: (74.49, 78.01), _KFAC_G: (73.70, 78.02)},
}

# Table 2: Jacobian norm at the end of training, CIFAR-10 without BN:
# model -> {optimizer: (without decay, with decay)}.
TABLE2_000 = {
    _VGG16: {_SGD: (564.0, 142.0), _KFAC_G: (498.0, 51.44)},
    _RESNET32: {_SGD: (2765.0, 1074.0), _KFAC_G: (2115.0, 64.16)},
}

# Table 3 (appendix G.1): (dataset, model) -> {optimizer: {batch: (without, with decay)}};
# BN + augmentation (its batch-128 columns are table 1's BN + augmentation rows).
TABLE3_000 = {
    (_CIFAR10, _VGG16): {
        _SGD: {128: (91.71, 93.39), 640: (90.46, 93.09), 2000: (88.50, 92.24)},
        _KFAC_F: {128: (93.12, 93.90), 640: (92.93, 93.55), 2000: (92.17, 93.31)},
        _KFAC_G: {128: (93.19, 93.80), 640: (92.98, 93.74), 2000: (90.78, 93.46)}},
    (_CIFAR10, _RESNET32): {
        _SGD: {128: (92.95, 95.14), 640: (91.68, 94.45), 2000: (89.70, 94.68)},
        _KFAC_F: {128: (93.80, 95.35), 640: (92.30, 94.79), 2000: (91.15, 94.43)},
        _KFAC_G: {128: (93.44, 95.04), 640: (91.80, 94.73), 2000: (90.02, 94.85)}},
    (_CIFAR100, _RESNET32): {
        _SGD: {128: (73.61, 77.73), 640: (71.74, 76.67), 2000: (65.38, 76.87)},
        _KFAC_F: {128: (74.49, 78.01), 640: (73.54, 77.34), 2000: (71.64, 77.13)},
        _KFAC_G: {128: (73.70, 78.02), 640: (71.13, 77.40), 2000: (65.41, 76.93)}},
}

# The figures publish curves, not numbers; these are the claims the text makes about them.
CLAIMS_000 = {
    "fig1": "Weight decay consistently improved test accuracy and beat L2 wherever the two "
            "differ (final accuracies: table 1).",
    "fig2": "Decay on the top (fully connected) layer alone barely matters; decay on the "
            "remaining (BN) layers gives most of the gain, for SGD and Adam.",
    "fig3": "Without decay the effective learning rate eta/||w||^2 falls ~10x over the first "
            "50 epochs; with decay it stays roughly constant within each LR stage.",
    "fig4": "Rescaling the conv layers to the decayed run's norms (wn-conv) closes almost "
            "the whole gap; adding decay on the top layer (wd-fc + wn-conv) closes it fully.",
    "fig5": "The input-output Jacobian norm correlates strongly with the generalization gap "
            "and with the K-FAC Gauss-Newton norm (MNIST MLPs, VGG11-19).",
    "fig6": "For K-FAC, decay on the non-BN (top) layer has the largest effect, but decay on "
            "the BN layers also helps, especially KFAC-F.",
    "fig7": "||F|| of the first layer's normalized weights falls ~4 orders of magnitude over "
            "the first 50 epochs; ||G|| grows only ~2x.",
    "fig8_9": "KFAC-G optimizes fastest per epoch (training loss 1e-4 within 10 epochs on "
              "VGG16) and still wins in wall-clock time.",
}

# ------------------------------------------------- paper 002 (curvature noise, ICLR 2019 sub.)

REGIME_LABELS = {
    _R.SB: "SB",
    _R.LB: "LB",
    _R.LB_GBN: "LB+GBN",
    _R.TRACE: "Trace+GBN",
    _R.DIAG_F: "Diag-F+GBN",
    _R.FULL_F: "LB+full F",
    _R.DIAG_F_PLAIN: "LB+diag F",
    _R.KFAC_PLAIN: "LB+K-FAC noise",
    _R.BATCH_CHANGE: "BatchChange",
    _R.MULTIPLICATIVE: "Multiplicative",
    _R.KFAC: "K-FAC",
}

# Table 1 (validation accuracy): (dataset, model) -> {regime: (mean, ± or None) or None}.
# The authors' configurations list six rows; the AlexNet rows and CIFAR-100 VGG16 are from the paper's text.
TABLE1_002 = {
    (_MNIST, _MLP): {_R.SB: (98.10, None), _R.LB_GBN: (97.94, None),
                     _R.TRACE: (98.08, None), _R.DIAG_F: (98.08, None)},
    (_MNIST, _LENET): {_R.SB: (99.10, None), _R.LB_GBN: (98.85, None),
                       _R.TRACE: (99.02, None), _R.DIAG_F: (99.10, None)},
    (_FASHION_MNIST, _LENET): {_R.SB: (91.10, None), _R.LB_GBN: (88.89, None),
                               _R.TRACE: (90.29, None), _R.DIAG_F: (90.77, None)},
    (_CIFAR10, _ALEXNET): {_R.SB: (87.80, None), _R.LB_GBN: (86.41, 0.18),
                           _R.TRACE: None, _R.DIAG_F: (87.30, 0.28)},
    (_CIFAR100, _ALEXNET): {_R.SB: (59.21, None), _R.LB_GBN: (56.75, 0.18),
                            _R.TRACE: None, _R.DIAG_F: (58.68, 0.40)},
    (_CIFAR10, _VGG16): {_R.SB: (93.25, None), _R.LB_GBN: (91.78, 0.29),
                         _R.TRACE: (92.81, 0.10), _R.DIAG_F: (93.15, 0.05)},
    (_CIFAR100, _VGG16): {_R.SB: (72.83, None), _R.LB_GBN: (69.44, 0.27),
                          _R.TRACE: (71.26, 0.09), _R.DIAG_F: (71.94, 0.14)},
    (_CIFAR10, _RESNET44): {_R.SB: (93.42, None), _R.LB_GBN: (91.92, 0.29),
                            _R.TRACE: (92.31, 0.02), _R.DIAG_F: (92.72, 0.15)},
    (_CIFAR100, RESNET44_X2): {_R.SB: (75.55, None), _R.LB_GBN: (73.11, 0.22),
                               _R.TRACE: (73.62, 0.15), _R.DIAG_F: (74.10, 0.18)},
}

# Table 2 (appendix E): (dataset, model) -> {regime: (mean, ±)}.
TABLE2_002 = {
    (_CIFAR10, _VGG16): {_R.SB: (93.25, None), _R.BATCH_CHANGE: (93.18, None),
                         _R.MULTIPLICATIVE: (90.98, None), _R.KFAC: (93.06, None),
                         _R.DIAG_F: (93.15, 0.05)},
    (_CIFAR100, _VGG16): {_R.SB: (72.83, None), _R.BATCH_CHANGE: (72.44, None),
                          _R.MULTIPLICATIVE: (68.77, None), _R.KFAC: (71.86, None),
                          _R.DIAG_F: (71.94, 0.14)},
    (_CIFAR10, _RESNET44): {_R.SB: (93.42, None), _R.BATCH_CHANGE: (93.02, None),
                            _R.MULTIPLICATIVE: (91.28, None), _R.KFAC: (92.81, None),
                            _R.DIAG_F: (92.72, 0.15)},
    (_CIFAR100, RESNET44_X2): {_R.SB: (75.55, None), _R.BATCH_CHANGE: (75.16, None),
                               _R.MULTIPLICATIVE: (71.98, None), _R.KFAC: (73.84, None),
                               _R.DIAG_F: (74.10, 0.18)},
}

# Table 3 (appendix E, square-root LR scaling for the LB columns). The text extraction lost
# the decimal points of most LB entries ("-691-", "715"); they are restored to one decimal.
TABLE3_002 = {
    (_CIFAR10, _VGG16): {_R.SB: (93.25, None), _R.LB_GBN: (91.6, None), _R.DIAG_F: (92.9, None)},
    (_CIFAR100, _VGG16): {_R.SB: (72.83, None), _R.LB_GBN: (69.1, None),
                          _R.DIAG_F: (71.5, None)},
    (_CIFAR10, _RESNET44): {_R.SB: (93.42, None), _R.LB_GBN: (91.7, None),
                            _R.DIAG_F: (92.6, None)},
    (_CIFAR100, RESNET44_X2): {_R.SB: (75.55, None), _R.LB_GBN: (72.8, None),
                               _R.DIAG_F: (73.6, None)},
}

CLAIMS_002 = {
    "fig1_2": "Diagonal Fisher noise converges faster than full Fisher noise on a 2-D "
              "quadratic (alpha = 0.1, 500 iterations); the bound depends on C only through "
              "Tr(C^T A C): ||A||_F^2 (full) vs ||diag A||_F^2 (diagonal).",
    "fig3": "(a) ||F||_F >> ||diag F||_F throughout training; (b) LB+diag F and LB+full F "
            "have about the same per-layer gradient variance; (c) LB+full F trains as slowly "
            "as SB, LB+diag F as fast as LB; (d) LB+diag F ends at a smaller largest Hessian "
            "eigenvalue than LB+GBN (ResNet44/VGG16, CIFAR-10/100).",
}
