"""Experiment configs: one data-only module per experiment, each with `get_config(arg=None)`.

Installed as `gemma_tune.experiments`; `python -m gemma_tune.train --experiment=list` lists them.
"""
