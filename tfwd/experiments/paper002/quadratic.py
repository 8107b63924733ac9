"""Paper 002's figures 1-2 (§3.2): noisy gradient descent on a 2-D convex quadratic with full
Fisher, diagonal Fisher, isotropic and no noise — trajectories and expected loss.

No network is trained: the study is exact numpy (``tfwd.noise.quadratic``, the math); this
module draws its figures (``trajectory_figure``, ``expected_loss_figure``) with the entries'
styling (``tfwd.experiments.plots``) and writes the entry's page.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from tfwd.choices.quadratic import QuadraticNoise
from tfwd.choices.scales import ScaleName
from tfwd.experiments import published
from tfwd.experiments.plots import style_axes, write_png
from tfwd.experiments.reporting import ReportContext, markdown_table, write_page
from tfwd.experiments.spec import Artifact, Experiment, Run, Scale
from tfwd.noise import quadratic
from tfwd.noise.quadratic import QUADRATIC_NOISE_KINDS

NOISE_LABELS = {
    QuadraticNoise.FISHER: "full Fisher, C = √A",
    QuadraticNoise.DIAGONAL: "diagonal Fisher, C = √diag(A)",
    QuadraticNoise.ISOTROPIC: "isotropic, C = √(Tr A / d)·I",
    QuadraticNoise.NONE: "no noise, C = 0",
}
QUADRATIC_DPI = 120
LEGEND_SIZE = 8

# The paper gives only α = 0.1, 500 iterations, plotted every 10; the matrix, start and
# noise scale are chosen here: a correlated, unevenly scaled 2-D quadratic (eigenvalues 3.51
# and 0.19; unequal diagonal, so diagonal and isotropic noise differ) started near its slow
# direction, so that the three noise structures separate: Tr(CᵀAC)/s² = ‖A‖²_F = 12.37,
# ‖diag A‖²_F = 9.49, Tr(A)²/2 = 6.85.
QUADRATIC_MATRIX = ((3.0, 1.2), (1.2, 0.7))
QUADRATIC_START = (1.0, -2.5)
QUADRATIC_LEARNING_RATE = 0.1
QUADRATIC_NOISE_SCALE = 0.3
QUADRATIC_SETTINGS = {  # scale -> (iterations, Monte Carlo seeds, plot every)
    ScaleName.PAPER: (500, 1000, 10),
    ScaleName.SMOKE: (500, 200, 10),
    ScaleName.TINY: (50, 10, 5),
}

# --------------------------------------------------------------------------- figures


def _matrix_text(A: np.ndarray) -> str:
    rows = ", ".join("[" + ", ".join(f"{value:.3g}" for value in row) + "]" for row in A)
    return f"[{rows}]"


def _loss_contours(axes, A: np.ndarray, points: np.ndarray) -> None:
    """Contours of L(θ) = ½θᵀAθ over the box around ``points`` (and the minimum)."""
    low, high = points.min(axis=0), points.max(axis=0)
    margin = 0.1 * np.maximum(high - low, 1e-12)
    grid_x, grid_y = np.meshgrid(
        np.linspace(low[0] - margin[0], high[0] + margin[0], 200),
        np.linspace(low[1] - margin[1], high[1] + margin[1], 200),
    )
    grid = np.stack([grid_x.ravel(), grid_y.ravel()], axis=1)
    grid_loss = quadratic.losses(A, grid).reshape(grid_x.shape)
    positive = grid_loss[grid_loss > 0]
    if positive.size:
        levels = np.geomspace(max(positive.min(), 1e-6 * positive.max()), positive.max(), 12)
        axes.contour(grid_x, grid_y, grid_loss, levels=levels, colors="0.75", linewidths=0.8)


def trajectory_figure(
    A,
    *,
    learning_rate: float = 0.1,
    steps: int = 500,
    seed: int = 0,
    theta0,
    noise_kinds: Sequence[str] = QUADRATIC_NOISE_KINDS,
    noise_scale: float = 1.0,
    plot_every: int = 10,
) -> Figure:
    """Figures 1–2 of paper 002: one sampled trajectory per noise kind over contours of L.

    A must be 2×2. Every kind uses the same ξ sequence (``seed``). Each trajectory is one
    labelled line (every ``plot_every``-th iterate); the start (blue) and end points of each
    run (green) are scatter markers, so ``figure.axes[0].get_lines()`` holds exactly one line
    per kind. Defaults follow figure 2 (α = 0.1, 500 iterations, plotted every 10).
    """
    A = np.asarray(A, dtype=np.float64)
    if A.shape != (2, 2):
        raise ValueError(f"trajectory plots need a 2×2 matrix A, got shape {A.shape}.")
    if isinstance(plot_every, bool) or not isinstance(plot_every, (int, np.integer)) \
            or plot_every < 1:
        raise ValueError(f"plot_every must be an integer >= 1, got {plot_every!r}.")
    trajectories = quadratic.sample_trajectories(
        A, learning_rate=learning_rate, steps=steps, seed=seed, theta0=theta0,
        noise_kinds=noise_kinds, noise_scale=noise_scale)
    A = 0.5 * (A + A.T)  # as the study uses it (validated symmetric)
    figure = Figure(figsize=(7, 6))
    axes = figure.add_subplot()
    _loss_contours(axes, A, np.concatenate(
        [path for path, _ in trajectories.values()] + [np.zeros((1, 2))]))
    for kind, (path, trace) in trajectories.items():
        shown = path[::plot_every]
        if (steps % plot_every) != 0:
            shown = np.concatenate([shown, path[-1:]])
        axes.plot(shown[:, 0], shown[:, 1], marker=".", markersize=3, linewidth=1.0,
                  label=f"{NOISE_LABELS[kind]}  (Tr(CᵀAC) = {trace:.3g})")
        axes.scatter(path[-1, 0], path[-1, 1], color="green", s=30, zorder=3)
    start = next(iter(trajectories.values()))[0][0]
    axes.scatter(start[0], start[1], color="blue", s=40, zorder=4)
    axes.set_aspect("equal", adjustable="datalim")
    style_axes(axes, xlabel="θ₁", ylabel="θ₂", legend_size=LEGEND_SIZE, legend_loc="best",
               title=f"Noisy GD on ½θᵀAθ, A = {_matrix_text(A)}, α = {learning_rate:g}, "
                     f"{steps} steps, seed {seed}")
    return figure


def plot_trajectories(A, *, path, **settings) -> str:
    """Writes ``trajectory_figure(A, **settings)`` as a PNG at ``path``; returns the path."""
    return write_png(trajectory_figure(A, **settings), path, dpi=QUADRATIC_DPI)


def expected_loss_figure(study: dict) -> Figure:
    """E[L(θ_k)] against k for each kind of a ``run_quadratic_study`` result.

    One labelled Monte Carlo line per kind (legend gives Tr(CᵀAC)), with a ±2 SE band and
    the exact expectation as a dashed line without a label (so the legend lists the kinds).
    Log scale, cut at a tenth of the lowest noisy plateau E[L_∞].
    """
    figure = Figure(figsize=(7, 5))
    axes = figure.add_subplot()
    iterations = np.arange(study["steps"] + 1)
    for kind, result in study["kinds"].items():
        (line,) = axes.plot(
            iterations, result["mean_loss"], linewidth=1.2,
            label=f"{NOISE_LABELS[kind]}  (Tr(CᵀAC) = {result['trace_ct_a_c']:.3g})")
        band = 2.0 * result["standard_error"]
        axes.fill_between(iterations, result["mean_loss"] - band, result["mean_loss"] + band,
                          color=line.get_color(), alpha=0.2, linewidth=0)
        axes.plot(iterations, result["exact_expected_loss"], linestyle="--", linewidth=0.8,
                  color=line.get_color())
    noise_floors = [result["stationary_expected_loss"] for result in study["kinds"].values()
                    if result["stationary_expected_loss"] > 0]
    style_axes(axes, xlabel="iteration k", ylabel="E[L(θ_k)]  (Monte Carlo; dashed: exact)",
               log_y=True, legend_size=LEGEND_SIZE, legend_loc="best",
               title=f"A = {_matrix_text(study['matrix'])}, α = {study['learning_rate']:g}, "
                     f"{study['num_seeds']} seeds")
    if noise_floors:
        # Zero noise decays geometrically to 0; keep the noisy plateaus readable.
        highest = max(float(np.max(result["mean_loss"])) for result in study["kinds"].values())
        axes.set_ylim(0.1 * min(noise_floors), 2.0 * highest)
    return figure


def plot_expected_loss(study: dict, path) -> str:
    """Writes ``expected_loss_figure(study)`` as a PNG at ``path`` and returns the path."""
    return write_png(expected_loss_figure(study), path, dpi=QUADRATIC_DPI)


# --------------------------------------------------------------------------- the entry


def _study_size(scale: Scale) -> tuple[int, int, int]:
    """(iterations, Monte Carlo seeds, plot every) at ``scale`` (``epochs``/``seeds`` of a
    small scale set the iterations and seeds)."""
    steps, num_seeds, every = QUADRATIC_SETTINGS[scale.name]
    if scale.seeds:
        num_seeds = max(2, scale.seeds)
    if scale.epochs:
        steps = scale.epochs
    return steps, num_seeds, every


def _fig1_2_runs(scale: Scale) -> list[Run]:
    return []  # no network is trained


def _verdict(study: dict, steps: int) -> str:
    diagonal, full = (study["kinds"][kind]["exact_expected_loss"][-1]
                      for kind in (QuadraticNoise.DIAGONAL, QuadraticNoise.FISHER))
    return (f"after {steps} steps the expected loss with diagonal Fisher noise "
            f"({diagonal:.4g}) is " + ("below" if diagonal < full else "NOT below")
            + f" that with full Fisher noise ({full:.4g}) (exact expectation)")


def _study_table(study: dict, steps: int) -> str:
    rows = [[NOISE_LABELS[kind], f"{result['trace_ct_a_c']:.4g}",
             f"{result['final_expected_loss']:.4g} ± {result['final_standard_error']:.2g}",
             f"{result['exact_expected_loss'][-1]:.4g}",
             f"{result['stationary_expected_loss']:.4g}"]
            for kind, result in study["kinds"].items()]
    header = ["noise C", "Tr(CᵀAC)", f"E[L] after {steps} steps (Monte Carlo ± SE)",
              "exact E[L]", "E[L_∞]"]
    return markdown_table(header, rows)


def _fig1_2_report(context: ReportContext):
    steps, num_seeds, every = _study_size(context.scale)
    matrix = np.asarray(QUADRATIC_MATRIX)
    trajectories = plot_trajectories(
        matrix, path=context.path("p002_fig1_2_trajectories.png"),
        learning_rate=QUADRATIC_LEARNING_RATE, steps=steps, seed=0, theta0=QUADRATIC_START,
        noise_scale=QUADRATIC_NOISE_SCALE, plot_every=every)
    study = quadratic.run_quadratic_study(
        matrix, learning_rate=QUADRATIC_LEARNING_RATE, steps=steps, num_seeds=num_seeds,
        theta0=QUADRATIC_START, seed=0, noise_scale=QUADRATIC_NOISE_SCALE)
    expected = plot_expected_loss(study, context.path("p002_fig1_2_expected_loss.png"))
    verdict = _verdict(study, steps)
    path = write_page(context, "p002_fig1_2.md", [
        f"L(θ) = ½θᵀAθ, A = {QUADRATIC_MATRIX}, θ₀ = {QUADRATIC_START}, α = "
        f"{QUADRATIC_LEARNING_RATE}, noise scale s = {QUADRATIC_NOISE_SCALE} (every C is s "
        f"times the listed matrix); {num_seeds} Monte Carlo seeds. Published: "
        + published.CLAIMS_002["fig1_2"],
        _study_table(study, steps), f"**Measured:** {verdict}.",
        f"![trajectories]({os.path.basename(trajectories)})",
        f"![expected loss]({os.path.basename(expected)})"])
    return Artifact(path=os.path.relpath(path, context.out_dir), kind="page",
                    summary=verdict, series=[NOISE_LABELS[k] for k in study["kinds"]])


FIG1_2 = Experiment(
    "p002_fig1_2", "002", "Figures 1-2",
    "Noisy gradient descent on a 2-D convex quadratic with full Fisher, diagonal "
    "Fisher, isotropic and no noise: trajectories and expected loss (§3.2).",
    _fig1_2_runs, _fig1_2_report)
