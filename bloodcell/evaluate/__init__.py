"""Evaluation: metrics (pycocotools), plots and the evaluation stages."""
