"""Evaluation and use of a trained model: test metrics, statistics, Grad-CAM, prediction, export."""
