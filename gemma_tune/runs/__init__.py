"""The run directory every training run writes, and reading a run back."""
