"""openai-monitor: local-first LLM API spend tracking, forecasting and anomaly detection."""

__version__ = "0.1.0"

__all__ = ["__version__"]
