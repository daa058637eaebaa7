"""Synthetic loan applications: the example model's training data, and realistic traffic for tests and benchmarks.

numpy only, so the server's image, the tests and the benchmark can all use it without scikit-learn.
"""

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    low: float
    high: float
    description: str


FEATURES = (
    FeatureSpec("age", 18, 85, "applicant age in years"),
    FeatureSpec("annual_income", 8_000, 1_000_000, "gross annual income, USD"),
    FeatureSpec("loan_amount", 1_000, 200_000, "requested principal, USD"),
    FeatureSpec("loan_term_months", 12, 72, "requested term"),
    FeatureSpec("credit_score", 300, 850, "FICO-style score"),
    FeatureSpec("debt_to_income", 0, 0.8, "monthly debt payments / monthly income"),
    FeatureSpec("employment_years", 0, 45, "years with current employer"),
    FeatureSpec("open_credit_lines", 0, 40, "open credit accounts"),
    FeatureSpec("delinquencies_2y", 0, 15, "30+ day delinquencies in the last two years"),
    FeatureSpec("credit_utilization", 0, 1, "revolving balance / revolving limit"),
    FeatureSpec("savings_balance", 0, 2_000_000, "liquid savings, USD"),
    FeatureSpec("months_since_last_inquiry", 0, 120, "months since the last hard credit inquiry"),
)
FEATURE_NAMES = [feature.name for feature in FEATURES]


def generate_applications(rows: int, seed: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Synthetic loan applications with realistic marginals and an approval rule with noise."""
    rng = np.random.default_rng(seed)
    columns = {
        "age": rng.normal(41, 12, rows),
        "annual_income": rng.lognormal(math.log(60_000), 0.5, rows),
        "loan_amount": rng.lognormal(math.log(15_000), 0.7, rows),
        "loan_term_months": rng.choice([12, 24, 36, 48, 60, 72], rows, p=[0.1, 0.15, 0.35, 0.15, 0.2, 0.05]),
        "credit_score": rng.normal(690, 60, rows),
        "debt_to_income": rng.beta(2, 5, rows) * 0.8,
        "employment_years": rng.exponential(6, rows),
        "open_credit_lines": rng.poisson(8, rows),
        "delinquencies_2y": rng.poisson(0.4, rows),
        "credit_utilization": rng.beta(2, 3, rows),
        "savings_balance": rng.lognormal(math.log(8_000), 1.0, rows),
        "months_since_last_inquiry": rng.exponential(12, rows),
    }
    features = np.column_stack([np.clip(columns[spec.name], spec.low, spec.high) for spec in FEATURES]).astype(
        np.float32
    )
    x = {name: features[:, index].astype(np.float64) for index, name in enumerate(FEATURE_NAMES)}
    score = (
        0.018 * (x["credit_score"] - 690)
        + 0.9 * np.log(x["annual_income"] / 60_000)
        - 1.1 * np.log(x["loan_amount"] / x["annual_income"] / 0.25)
        - 5.0 * (x["debt_to_income"] - 0.23)
        - 0.7 * x["delinquencies_2y"]
        - 1.5 * (x["credit_utilization"] - 0.4)
        + 0.05 * x["employment_years"]
        + 0.25 * np.log1p(x["savings_balance"] / 8_000)
        - 0.01 * (x["loan_term_months"] - 36)
        + rng.logistic(0, 1, rows)
    )
    labels = (score > 0).astype(np.int64)
    return features, labels
