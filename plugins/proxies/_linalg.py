"""Matrix helpers shared by proxies: the correlation-eigenvalue score and a safe log-determinant."""

from __future__ import annotations

import numpy as np

EIGEN_OFFSET = 1e-5


def correlation_eigen_score(rows: np.ndarray, k: float = EIGEN_OFFSET) -> tuple[float, str | None]:
    """−Σ_j [log(λ_j + k) + 1/(λ_j + k)] over the eigenvalues of the correlation matrix of ``rows``.

    ``rows`` is (variables × observations). Returns ``(score, None)``, or ``(nan, reason)`` when a row
    is constant (its correlation is undefined) or the eigen-solver fails. The correlation matrix is
    symmetric, so a symmetric solver gives real eigenvalues (a general one can return complex ones).
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 2:
        return float("nan"), f"needs at least 2 rows to correlate, got shape {rows.shape}"
    # Exactly equal values (a std test keeps constant rows whose mean carries rounding noise).
    constant = int((np.ptp(rows, axis=1) == 0).sum())
    if constant:
        return float("nan"), f"{constant} of {rows.shape[0]} rows are constant (correlation undefined)"
    if not np.isfinite(rows).all():
        return float("nan"), "non-finite values in the matrix"
    corr = np.corrcoef(rows)
    try:
        eigenvalues = np.linalg.eigvalsh(corr)
    except np.linalg.LinAlgError as err:
        return float("nan"), f"eigen-solver failed: {err}"
    # Round-off can leave tiny negative eigenvalues below -k; clip them to 0 as a PSD matrix requires.
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    score = -float(np.sum(np.log(eigenvalues + k) + 1.0 / (eigenvalues + k)))
    return score, None


def log_determinant(matrix: np.ndarray) -> tuple[float, str | None]:
    """log|det(matrix)| with NaN and a reason when the matrix is singular."""
    sign, logdet = np.linalg.slogdet(np.asarray(matrix, dtype=np.float64))
    if sign == 0 or not np.isfinite(logdet):
        return float("nan"), "the kernel matrix is singular (identical activation patterns)"
    return float(logdet), None
