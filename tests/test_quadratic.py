"""Noisy gradient descent on ½θᵀAθ (paper 002, section 3.2) against closed forms."""
import matplotlib.image
import numpy as np
import pytest

from tfwd.experiments.paper002.quadratic import (
    NOISE_LABELS,
    expected_loss_figure,
    plot_expected_loss,
    plot_trajectories,
    trajectory_figure,
)
from tfwd.noise.quadratic import (
    QUADRATIC_NOISE_KINDS,
    expected_loss_exact,
    noise_matrix,
    run_quadratic_study,
    sample_iterates,
    sample_trajectories,
    stationary_expected_loss,
    trace_ct_a_c,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def random_spd(dimension: int, seed: int) -> np.ndarray:
    factor = np.random.default_rng(seed).standard_normal((dimension, dimension))
    return factor @ factor.T / dimension + 0.1 * np.eye(dimension)


def rotated_2d(largest: float, smallest: float, degrees: float) -> np.ndarray:
    """R diag(largest, smallest) Rᵀ: non-diagonal, with unequal diagonal unless 45°."""
    angle = np.deg2rad(degrees)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return rotation @ np.diag([largest, smallest]) @ rotation.T


# Ill-conditioned (κ = 20), non-diagonal, and diag(A) is not a multiple of I, so the
# full-Fisher, diagonal and isotropic noise differ.
ILL_CONDITIONED = rotated_2d(1.0, 0.05, 30.0)


# --------------------------------------------------------------------------- closed forms


def test_trace_term_closed_forms_on_random_spd():
    A = random_spd(5, seed=1)
    dimension = A.shape[0]
    trace = {kind: trace_ct_a_c(A, noise_matrix(A, kind)) for kind in QUADRATIC_NOISE_KINDS}
    np.testing.assert_allclose(trace["fisher"], np.linalg.norm(A, "fro") ** 2, rtol=1e-12)
    np.testing.assert_allclose(trace["diagonal"], np.sum(np.diag(A) ** 2), rtol=1e-12)
    np.testing.assert_allclose(trace["isotropic"], np.trace(A) ** 2 / dimension, rtol=1e-12)
    assert trace["none"] == 0.0
    # ‖A‖²_F ≥ ‖diag A‖²_F ≥ Tr(A)²/d, strictly for a generic A.
    assert trace["fisher"] > trace["diagonal"] > trace["isotropic"] > trace["none"]


def test_noise_matrices_share_the_total_variance():
    A = random_spd(4, seed=2)
    fisher = noise_matrix(A, "fisher")
    np.testing.assert_allclose(fisher @ fisher, A, atol=1e-12)
    np.testing.assert_allclose(fisher, fisher.T, atol=1e-12)
    for kind in ("fisher", "diagonal", "isotropic"):
        C = noise_matrix(A, kind)
        np.testing.assert_allclose(np.trace(C @ C.T), np.trace(A), rtol=1e-12)
    scaled = noise_matrix(A, "diagonal", noise_scale=0.3)
    np.testing.assert_allclose(scaled, 0.3 * noise_matrix(A, "diagonal"), rtol=1e-12)


def test_exact_recursion_reaches_the_stationary_loss():
    A = random_spd(3, seed=3)
    learning_rate = 1.0 / np.linalg.eigvalsh(A)[-1]
    for kind in ("fisher", "diagonal", "isotropic"):
        C = noise_matrix(A, kind)
        exact = expected_loss_exact(
            A, C, learning_rate=learning_rate, steps=3000, theta0=np.ones(3)
        )
        stationary = stationary_expected_loss(A, C, learning_rate=learning_rate)
        np.testing.assert_allclose(exact[-1], stationary, rtol=1e-10)


def test_stationary_loss_for_full_fisher_noise_per_eigenvalue():
    # C = √A commutes with A: E[L_∞] = ½ Σ_i λ_i · α/(2 − αλ_i).
    A = random_spd(4, seed=4)
    learning_rate = 0.5
    eigenvalues = np.linalg.eigvalsh(A)
    expected = 0.5 * np.sum(eigenvalues * learning_rate / (2.0 - learning_rate * eigenvalues))
    np.testing.assert_allclose(
        stationary_expected_loss(A, noise_matrix(A, "fisher"), learning_rate=learning_rate),
        expected,
        rtol=1e-12,
    )


# --------------------------------------------------------------------------- Monte Carlo


def test_monte_carlo_matches_exact_recursion_within_four_standard_errors():
    A = random_spd(3, seed=5)
    steps = 150
    study = run_quadratic_study(
        A, learning_rate=0.8, steps=steps, num_seeds=4000, theta0=[1.0, -2.0, 0.5], seed=6
    )
    # A handful of checkpoints, so 4 SE is a per-point test (Bonferroni ≈ 1e-3 in all).
    checkpoints = np.array([0, 1, 2, 5, 10, 20, 50, 100, steps])
    for kind, result in study["kinds"].items():
        mean = result["mean_loss"][checkpoints]
        exact = result["exact_expected_loss"][checkpoints]
        tolerance = 4.0 * result["standard_error"][checkpoints] + 1e-10 * exact
        assert np.all(np.abs(mean - exact) <= tolerance), (kind, mean, exact, tolerance)
        assert result["final_expected_loss"] == result["mean_loss"][-1]
        assert result["mean_loss"].shape == result["standard_error"].shape == (steps + 1,)


def test_steady_state_orders_as_the_trace_term_predicts():
    A = ILL_CONDITIONED
    learning_rate, steps = 1.0, 400  # (1 − αλ_min)^{2·steps} ≈ e^{-41}: stationary.
    theta0 = np.array([2.0, 1.0])
    study = run_quadratic_study(
        A, learning_rate=learning_rate, steps=steps, num_seeds=4000, theta0=theta0, seed=7
    )
    kinds = study["kinds"]
    trace = [kinds[kind]["trace_ct_a_c"] for kind in QUADRATIC_NOISE_KINDS]
    final = [kinds[kind]["final_expected_loss"] for kind in QUADRATIC_NOISE_KINDS]
    stationary = [kinds[kind]["stationary_expected_loss"] for kind in QUADRATIC_NOISE_KINDS]
    assert trace == sorted(trace, reverse=True) and len(set(trace)) == len(trace)
    assert final == sorted(final, reverse=True)
    assert stationary == sorted(stationary, reverse=True)
    for kind in ("fisher", "diagonal", "isotropic"):
        result = kinds[kind]
        assert abs(result["final_expected_loss"] - result["stationary_expected_loss"]) <= (
            4.0 * result["final_standard_error"]
        )
    # Zero noise is plain gradient descent: L_k ≤ (1 − αλ_min)^{2k} L_0 → 0.
    smallest = np.linalg.eigvalsh(A)[0]
    initial_loss = 0.5 * theta0 @ A @ theta0
    assert kinds["none"]["final_expected_loss"] <= (
        (1.0 - learning_rate * smallest) ** (2 * steps) * initial_loss
    )
    # Every run is the same deterministic path; the spread is rounding only.
    assert kinds["none"]["final_standard_error"] <= 1e-6 * kinds["none"]["final_expected_loss"]


def test_study_is_deterministic_given_seed():
    settings = dict(learning_rate=0.5, steps=20, num_seeds=8, theta0=[1.0, 1.0])
    first = run_quadratic_study(ILL_CONDITIONED, seed=11, **settings)
    again = run_quadratic_study(ILL_CONDITIONED, seed=11, **settings)
    other = run_quadratic_study(ILL_CONDITIONED, seed=12, **settings)
    for kind in QUADRATIC_NOISE_KINDS:
        np.testing.assert_array_equal(
            first["kinds"][kind]["mean_loss"], again["kinds"][kind]["mean_loss"]
        )
    assert not np.array_equal(
        first["kinds"]["fisher"]["mean_loss"], other["kinds"]["fisher"]["mean_loss"]
    )


def test_sample_iterates_is_the_update_rule():
    A = random_spd(2, seed=8)
    C = noise_matrix(A, "diagonal")
    learning_rate, theta0, seed = 0.3, np.array([1.0, -1.0]), 9
    iterates = list(
        sample_iterates(
            A, C, learning_rate=learning_rate, steps=3, theta0=theta0, num_seeds=2, seed=seed
        )
    )
    rng = np.random.default_rng(seed)
    theta = np.tile(theta0, (2, 1))
    np.testing.assert_array_equal(iterates[0], theta)
    for k in range(3):
        xi = rng.standard_normal((2, 2))
        theta = np.stack(
            [t - learning_rate * A @ t + learning_rate * C @ x for t, x in zip(theta, xi)]
        )
        np.testing.assert_allclose(iterates[k + 1], theta, rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------- figures


def assert_valid_png(path):
    with open(path, "rb") as handle:
        assert handle.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def labelled_lines(figure):
    return [line for line in figure.axes[0].get_lines() if not line.get_label().startswith("_")]


def test_trajectory_plot(tmp_path):
    settings = dict(learning_rate=0.1, steps=200, seed=0, theta0=[2.0, 1.5])
    path = plot_trajectories(ILL_CONDITIONED, path=tmp_path / "traj.png", **settings)
    assert path == str(tmp_path / "traj.png")
    assert_valid_png(path)

    figure = trajectory_figure(ILL_CONDITIONED, **settings)
    axes = figure.axes[0]
    lines = axes.get_lines()
    assert len(lines) == len(QUADRATIC_NOISE_KINDS)
    for line, kind in zip(lines, QUADRATIC_NOISE_KINDS):
        assert line.get_label().startswith(NOISE_LABELS[kind])
    assert "α = 0.1" in axes.get_title() and "A = [[" in axes.get_title()


def test_expected_loss_plot(tmp_path):
    study = run_quadratic_study(
        ILL_CONDITIONED, learning_rate=0.5, steps=50, num_seeds=50, theta0=[1.0, 1.0], seed=0
    )
    path = plot_expected_loss(study, tmp_path / "sub" / "loss.png")
    assert_valid_png(path)
    lines = labelled_lines(expected_loss_figure(study))
    assert len(lines) == len(QUADRATIC_NOISE_KINDS)
    for line, kind in zip(lines, QUADRATIC_NOISE_KINDS):
        trace = study["kinds"][kind]["trace_ct_a_c"]
        assert f"Tr(CᵀAC) = {trace:.3g}" in line.get_label()


# --------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize(
    "A, message",
    [
        (np.ones((2, 3)), "square"),
        (np.array([[1.0, 0.5], [0.0, 1.0]]), "symmetric"),
        (np.array([[1.0, 0.0], [0.0, -0.5]]), "positive semi-definite"),
        (np.array([[1.0, np.nan], [np.nan, 1.0]]), "finite"),
    ],
)
def test_bad_matrix_raises(A, message):
    with pytest.raises(ValueError, match=message):
        run_quadratic_study(
            A, learning_rate=0.1, steps=5, num_seeds=4, theta0=np.zeros(A.shape[0]), seed=0
        )


def test_unstable_learning_rate_names_the_bound():
    A = np.diag([4.0, 1.0])  # 2/λ_max = 0.5
    with pytest.raises(ValueError, match=r"2/λ_max\(A\) = 0\.5"):
        run_quadratic_study(
            A, learning_rate=0.5, steps=5, num_seeds=4, theta0=[1.0, 1.0], seed=0
        )
    with pytest.raises(ValueError, match="2/λ_max"):
        expected_loss_exact(A, np.eye(2), learning_rate=0.6, steps=5, theta0=[1.0, 1.0])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(learning_rate=-0.1), "learning_rate must be a positive"),
        (dict(steps=0), "steps must be an integer"),
        (dict(num_seeds=1), "num_seeds must be an integer >= 2"),
        (dict(theta0=[1.0, 2.0, 3.0]), r"theta0 must have shape \(2,\)"),
        (dict(noise_kinds=("fisher", "kfac")), "unknown: \\['kfac'\\]"),
        (dict(noise_kinds=()), "noise_kinds must be distinct"),
        (dict(noise_scale=-1.0), "noise_scale"),
    ],
)
def test_bad_settings_raise(overrides, message):
    settings = dict(learning_rate=0.1, steps=5, num_seeds=4, theta0=[1.0, 1.0], seed=0)
    settings.update(overrides)
    with pytest.raises(ValueError, match=message):
        run_quadratic_study(ILL_CONDITIONED, **settings)


def test_trajectory_plot_needs_2d(tmp_path):
    with pytest.raises(ValueError, match="2×2"):
        plot_trajectories(
            random_spd(3, seed=0), path=tmp_path / "x.png", theta0=np.ones(3)
        )


def test_sample_trajectories_share_one_draw_and_follow_the_update_rule():
    A = random_spd(2, seed=8)
    learning_rate, theta0, seed, steps, scale = 0.3, np.array([1.0, -1.0]), 9, 4, 0.5
    trajectories = sample_trajectories(
        A, learning_rate=learning_rate, steps=steps, seed=seed, theta0=theta0, noise_scale=scale
    )
    assert tuple(trajectories) == QUADRATIC_NOISE_KINDS
    for kind, (path, trace) in trajectories.items():
        C = noise_matrix(A, kind, scale)
        rng = np.random.default_rng(seed)  # the same draw for every kind
        theta, expected = theta0, [theta0]
        for _ in range(steps):
            xi = rng.standard_normal((1, 2))[0]
            theta = theta - learning_rate * A @ theta + learning_rate * C @ xi
            expected.append(theta)
        np.testing.assert_allclose(path, np.stack(expected), rtol=1e-12, atol=1e-14)
        assert trace == pytest.approx(float(np.trace(C.T @ A @ C)), rel=1e-12)
