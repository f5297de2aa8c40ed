"""Evaluation: generation, text metrics, base-vs-tuned comparison, reference loss, retrieval."""
