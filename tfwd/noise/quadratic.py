"""Noisy gradient descent on a convex quadratic (paper 002, section 3.2, figures 1–2).

The loss is L(θ) = ½ θᵀAθ with A symmetric positive semi-definite; on a quadratic the
Fisher and the Hessian coincide and both equal A. With step size α (``learning_rate``) and a
constant noise matrix C the iteration of paper 002 eq. 2 / appendix A is

    θ_{k+1} = θ_k − α A θ_k + α C ξ_k,        ξ_k ~ N(0, I),

i.e. the exact gradient plus Gaussian noise of covariance α² CCᵀ. The noise kinds
(``QUADRATIC_NOISE_KINDS``, ``tfwd.choices.quadratic``; ``noise_scale`` s multiplies every C, the
paper's √((M_L−M_S)/(M_L M_S))):

* ``"fisher"``     C = s·√A            (full Fisher noise, CCᵀ = s²A),
* ``"diagonal"``   C = s·√diag(A)      (diagonal Fisher noise, paper 002 Algorithm 1),
* ``"isotropic"``  C = s·c·I with c = √(Tr(A)/d), so that Tr(CCᵀ) = s²Tr(A): the *same total
  noise variance* as the two Fisher kinds, spread evenly. (Paper 002's "trace noise" in
  Table 1 uses √Tr(F)·I, d times more total variance; matching the trace here makes the
  kinds differ only in the *structure* of the noise, which is what section 3.2 studies.)
* ``"none"``       C = 0               (plain gradient descent).

Theorem 3.1 (adapted from Bottou et al. 2018, proof in appendix A) bounds E[L(θ_k)] through
one step of the recursion

    E[L(θ_{k+1})] ≤ (1 − α λ_min) E[L(θ_k)] + (α²/2) Tr(CᵀAC),       α ≤ 1/λ_max,

so C enters only through Tr(CᵀAC) = E[‖Cξ‖²_A]:

* C = √A:        Tr(CᵀAC) = Tr(A²)        = ‖A‖²_F,
* C = √diag(A):  Tr(CᵀAC) = Tr(diag(A)²)  = ‖diag(A)‖²_F,
* C = c·I:       Tr(CᵀAC) = Tr(A)²/d,

and ‖A‖²_F ≥ ‖diag(A)‖²_F ≥ Tr(A)²/d (dropping off-diagonal squares; Cauchy–Schwarz).

The iteration is linear-Gaussian, so its expected loss has a closed form, used here as the
independent reference for the Monte Carlo (``expected_loss_exact``). With B = I − αA,
mean m_k = B^k θ_0 and covariance Σ_0 = 0,

    Σ_{k+1} = B Σ_k Bᵀ + α² CCᵀ,        E[L_k] = ½ Tr(A Σ_k) + ½ m_kᵀ A m_k.

The iteration is stable iff α < 2/λ_max(A) (every eigenvalue of B inside (−1, 1] ), and then,
with A = Σ_i λ_i q_i q_iᵀ, the stationary loss is (``stationary_expected_loss``)

    E[L_∞] = (α/2) Σ_{i: λ_i>0} q_iᵀCCᵀq_i / (2 − αλ_i)
           = (α/4) Tr(CCᵀ) + (α²/8) Tr(CᵀAC) + O(α³).

All three noisy kinds share Tr(CCᵀ) = s²Tr(A), so the first term is common and the
difference between them starts with Tr(CᵀAC). For d = 2 both E[L_∞] and Tr(CᵀAC) are
increasing affine functions of the noise variance along the top eigenvector at fixed
Tr(CCᵀ), so they order the kinds identically for every stable α; for d > 2 that holds to
second order in α.

Reference: paper 002, "Exploring curvature noise in large-batch stochastic optimization",
section 3.2 (Theorem 3.1), appendix A, figures 1–2 (2-D trajectories; figure 2 uses α = 0.1,
500 iterations, plotted every 10). This module is the math; the figures are drawn by
``tfwd.experiments.paper002.quadratic`` beside the other experiment plots.
"""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from tfwd.choices.quadratic import QUADRATIC_NOISE_KINDS, QuadraticNoise

# Relative tolerance for the symmetry and positive semi-definiteness checks on A.
_MATRIX_TOLERANCE = 1e-10


# --------------------------------------------------------------------------- validation


def _validated_matrix(A) -> np.ndarray:
    """A as a float64 symmetric PSD matrix, or ValueError saying what is wrong."""
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0:
        raise ValueError(f"A must be a square d×d matrix, got shape {A.shape}.")
    if not np.all(np.isfinite(A)):
        raise ValueError("A must be finite; it contains NaN or inf.")
    scale = max(1.0, float(np.max(np.abs(A))))
    if not np.allclose(A, A.T, rtol=0.0, atol=_MATRIX_TOLERANCE * scale):
        raise ValueError(
            "A must be symmetric (L(θ) = ½θᵀAθ uses only its symmetric part); "
            "pass (A + A.T) / 2."
        )
    A = 0.5 * (A + A.T)
    smallest = float(np.linalg.eigvalsh(A)[0])
    if smallest < -_MATRIX_TOLERANCE * scale:
        raise ValueError(
            f"A must be positive semi-definite for a convex quadratic; its smallest "
            f"eigenvalue is {smallest:.6g}."
        )
    return A


def stability_bound(A) -> float:
    """2/λ_max(A): noisy gradient descent on ½θᵀAθ is stable iff α < this (inf if A = 0)."""
    largest = float(np.linalg.eigvalsh(_validated_matrix(A))[-1])
    return np.inf if largest <= 0.0 else 2.0 / largest


def _check_learning_rate(A: np.ndarray, learning_rate: float) -> float:
    learning_rate = float(learning_rate)
    if not np.isfinite(learning_rate) or learning_rate <= 0.0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}.")
    bound = stability_bound(A)
    if learning_rate >= bound:
        raise ValueError(
            f"learning_rate={learning_rate:.6g} makes the iteration unstable: it must be "
            f"below 2/λ_max(A) = {bound:.6g} (λ_max = {2.0 / bound:.6g})."
        )
    return learning_rate


def _check_positive_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def _check_theta0(theta0, dimension: int) -> np.ndarray:
    theta0 = np.asarray(theta0, dtype=np.float64)
    if theta0.shape != (dimension,):
        raise ValueError(
            f"theta0 must have shape ({dimension},) to match A, got {theta0.shape}."
        )
    if not np.all(np.isfinite(theta0)):
        raise ValueError("theta0 must be finite.")
    return theta0


def _check_noise_kinds(noise_kinds: Sequence[str]) -> tuple[str, ...]:
    noise_kinds = tuple(noise_kinds)
    unknown = [kind for kind in noise_kinds if kind not in QUADRATIC_NOISE_KINDS]
    if unknown or not noise_kinds or len(set(noise_kinds)) != len(noise_kinds):
        raise ValueError(
            f"noise_kinds must be distinct names from {QUADRATIC_NOISE_KINDS}, got "
            f"{noise_kinds!r}"
            + (f" (unknown: {unknown})." if unknown else ".")
        )
    return noise_kinds


def _check_noise_scale(noise_scale: float) -> float:
    noise_scale = float(noise_scale)
    if not np.isfinite(noise_scale) or noise_scale < 0.0:
        raise ValueError(f"noise_scale must be a finite number >= 0, got {noise_scale!r}.")
    return noise_scale


# --------------------------------------------------------------------------- the math


def noise_matrix(A, kind: str, noise_scale: float = 1.0) -> np.ndarray:
    """The constant noise matrix C of one kind (module docstring), times ``noise_scale``."""
    A = _validated_matrix(A)
    (kind,) = _check_noise_kinds((kind,))
    noise_scale = _check_noise_scale(noise_scale)
    dimension = A.shape[0]
    if kind == QuadraticNoise.FISHER:
        eigenvalues, eigenvectors = np.linalg.eigh(A)
        root = np.sqrt(np.clip(eigenvalues, 0.0, None))
        matrix = (eigenvectors * root) @ eigenvectors.T
    elif kind == QuadraticNoise.DIAGONAL:
        matrix = np.diag(np.sqrt(np.clip(np.diag(A), 0.0, None)))
    elif kind == QuadraticNoise.ISOTROPIC:
        matrix = np.sqrt(np.trace(A) / dimension) * np.eye(dimension)
    else:
        matrix = np.zeros_like(A)
    return noise_scale * matrix


def trace_ct_a_c(A, C) -> float:
    """Tr(CᵀAC) = E[‖Cξ‖²_A], the only way C enters the bound of Theorem 3.1."""
    A = _validated_matrix(A)
    C = np.asarray(C, dtype=np.float64)
    return float(np.trace(C.T @ A @ C))


def sample_iterates(
    A, C, *, learning_rate: float, steps: int, theta0, num_seeds: int, seed: int
) -> Iterator[np.ndarray]:
    """Yields θ_0, …, θ_steps of ``num_seeds`` independent runs, each of shape (num_seeds, d).

    θ_{k+1} = θ_k − αAθ_k + αCξ_k with ξ_k drawn from ``np.random.default_rng(seed)`` as one
    (num_seeds, d) block per step, so the same seed gives the same ξ sequence whatever C is.
    """
    A = _validated_matrix(A)
    learning_rate = _check_learning_rate(A, learning_rate)
    steps = _check_positive_int("steps", steps)
    num_seeds = _check_positive_int("num_seeds", num_seeds)
    theta0 = _check_theta0(theta0, A.shape[0])
    C = np.asarray(C, dtype=np.float64)
    if C.shape != A.shape:
        raise ValueError(f"C must have the shape of A, {A.shape}, got {C.shape}.")
    rng = np.random.default_rng(seed)
    theta = np.tile(theta0, (num_seeds, 1))
    yield theta.copy()
    for _ in range(steps):
        xi = rng.standard_normal(theta.shape)
        # Rows are runs: (Aθ)ᵀ = θᵀA for symmetric A, (Cξ)ᵀ = ξᵀCᵀ.
        theta = theta - learning_rate * theta @ A + learning_rate * xi @ C.T
        yield theta.copy()


def losses(A: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """L(θ) = ½θᵀAθ for each row of ``theta`` (A already validated)."""
    return 0.5 * np.einsum("si,ij,sj->s", theta, A, theta)


def sample_trajectories(
    A,
    *,
    learning_rate: float,
    steps: int,
    seed: int,
    theta0,
    noise_kinds: Sequence[str] = QUADRATIC_NOISE_KINDS,
    noise_scale: float = 1.0,
) -> dict[str, tuple[np.ndarray, float]]:
    """One sampled run per noise kind, all from the same ξ sequence (``seed``), as in
    figures 1–2 of paper 002: {kind: (θ_0 … θ_steps as a (steps + 1, d) array, Tr(CᵀAC))}."""
    A = _validated_matrix(A)
    learning_rate = _check_learning_rate(A, learning_rate)
    steps = _check_positive_int("steps", steps)
    theta0 = _check_theta0(theta0, A.shape[0])
    noise_kinds = _check_noise_kinds(noise_kinds)
    noise_scale = _check_noise_scale(noise_scale)
    trajectories = {}
    for kind in noise_kinds:
        C = noise_matrix(A, kind, noise_scale)
        iterates = sample_iterates(
            A, C, learning_rate=learning_rate, steps=steps, theta0=theta0, num_seeds=1,
            seed=seed,
        )
        trajectories[kind] = (np.concatenate(list(iterates)), trace_ct_a_c(A, C))
    return trajectories


def expected_loss_exact(A, C, *, learning_rate: float, steps: int, theta0) -> np.ndarray:
    """E[L(θ_k)] for k = 0, …, steps by the exact moment recursion (module docstring).

    m_{k+1} = B m_k, Σ_{k+1} = B Σ_k Bᵀ + α²CCᵀ with B = I − αA, m_0 = θ_0, Σ_0 = 0, and
    E[L_k] = ½Tr(AΣ_k) + ½m_kᵀAm_k. Shape (steps + 1,).
    """
    A = _validated_matrix(A)
    learning_rate = _check_learning_rate(A, learning_rate)
    steps = _check_positive_int("steps", steps)
    mean = _check_theta0(theta0, A.shape[0])
    C = np.asarray(C, dtype=np.float64)
    transition = np.eye(A.shape[0]) - learning_rate * A
    noise_covariance = learning_rate**2 * (C @ C.T)
    covariance = np.zeros_like(A)
    expected = np.empty(steps + 1)
    for k in range(steps + 1):
        expected[k] = 0.5 * np.sum(A * covariance) + 0.5 * mean @ A @ mean
        mean = transition @ mean
        covariance = transition @ covariance @ transition.T + noise_covariance
    return expected


def stationary_expected_loss(A, C, *, learning_rate: float) -> float:
    """lim_k E[L(θ_k)] = (α/2) Σ_{λ_i>0} q_iᵀCCᵀq_i / (2 − αλ_i), for α < 2/λ_max."""
    A = _validated_matrix(A)
    learning_rate = _check_learning_rate(A, learning_rate)
    C = np.asarray(C, dtype=np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(A)
    variance_along_eigenvectors = np.einsum(
        "ij,ik,kj->j", eigenvectors, C @ C.T, eigenvectors
    )
    curved = eigenvalues > _MATRIX_TOLERANCE * max(1.0, float(eigenvalues[-1]))
    return float(
        0.5
        * learning_rate
        * np.sum(
            variance_along_eigenvectors[curved]
            / (2.0 - learning_rate * eigenvalues[curved])
        )
    )


def _kind_result(
    A: np.ndarray, C: np.ndarray, *, learning_rate: float, steps: int, theta0: np.ndarray,
    num_seeds: int, seed: int,
) -> dict:
    """``run_quadratic_study``'s entry of one noise matrix C (its docstring lists the keys)."""
    loss_paths = np.stack(
        [
            losses(A, theta)
            for theta in sample_iterates(
                A, C, learning_rate=learning_rate, steps=steps, theta0=theta0,
                num_seeds=num_seeds, seed=seed,
            )
        ]
    )
    mean_loss = loss_paths.mean(axis=1)
    standard_error = loss_paths.std(axis=1, ddof=1) / np.sqrt(num_seeds)
    return {
        "noise_matrix": C,
        "mean_loss": mean_loss,
        "standard_error": standard_error,
        "final_expected_loss": float(mean_loss[-1]),
        "final_standard_error": float(standard_error[-1]),
        "trace_ct_a_c": trace_ct_a_c(A, C),
        "exact_expected_loss": expected_loss_exact(
            A, C, learning_rate=learning_rate, steps=steps, theta0=theta0
        ),
        "stationary_expected_loss": stationary_expected_loss(A, C, learning_rate=learning_rate),
    }


def run_quadratic_study(
    A,
    *,
    learning_rate: float,
    steps: int,
    num_seeds: int,
    theta0,
    seed: int,
    noise_kinds: Sequence[str] = QUADRATIC_NOISE_KINDS,
    noise_scale: float = 1.0,
) -> dict:
    """Monte Carlo of noisy gradient descent for each noise kind, beside its exact expectation.

    Every kind is run from the same ``seed`` (common random numbers: the same ξ sequence),
    so differences between kinds come from C and not from the draw.

    Returns a dict with the settings (``matrix``, ``learning_rate``, ``steps``,
    ``num_seeds``, ``seed``, ``theta0``, ``noise_scale``) and ``kinds``: for each kind a dict

    * ``noise_matrix``: C;
    * ``mean_loss``, ``standard_error``: Monte Carlo mean of L(θ_k) over the runs and its
      standard error (sample std / √num_seeds), arrays of shape (steps + 1,);
    * ``final_expected_loss``, ``final_standard_error``: both at k = steps;
    * ``trace_ct_a_c``: Tr(CᵀAC);
    * ``exact_expected_loss``: ``expected_loss_exact``, shape (steps + 1,);
    * ``stationary_expected_loss``: ``stationary_expected_loss`` (the k → ∞ limit).
    """
    A = _validated_matrix(A)
    learning_rate = _check_learning_rate(A, learning_rate)
    steps = _check_positive_int("steps", steps)
    num_seeds = _check_positive_int("num_seeds", num_seeds, minimum=2)
    theta0 = _check_theta0(theta0, A.shape[0])
    noise_kinds = _check_noise_kinds(noise_kinds)
    noise_scale = _check_noise_scale(noise_scale)

    kinds = {
        kind: _kind_result(
            A, noise_matrix(A, kind, noise_scale), learning_rate=learning_rate, steps=steps,
            theta0=theta0, num_seeds=num_seeds, seed=seed,
        )
        for kind in noise_kinds
    }
    return {
        "matrix": A,
        "learning_rate": learning_rate,
        "steps": steps,
        "num_seeds": num_seeds,
        "seed": seed,
        "theta0": theta0,
        "noise_scale": noise_scale,
        "kinds": kinds,
    }
