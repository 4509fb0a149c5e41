//! genset readiness scoring: scorers, canary assertions, confidence intervals, verdicts
