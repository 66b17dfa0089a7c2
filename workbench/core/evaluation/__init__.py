"""Evaluation: data, latency, accuracy, fidelity and memory. The only place models meet engines."""
