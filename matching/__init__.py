"""Matching: texts to vectors, a vector index, ranking, explanations and evaluation metrics."""
