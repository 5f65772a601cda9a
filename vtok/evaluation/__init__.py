"""Evaluation: classic-codec baselines, rate-distortion plots and the `vtok eval` harness."""
