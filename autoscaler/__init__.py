"""Predictive autoscaler for Kubernetes: forecasts each opted-in Deployment's load and sets replicas
ahead of it, falling back to HPA-style reactive scaling when the forecast cannot be trusted."""

__all__ = ["__version__"]

__version__ = "0.1.0"
