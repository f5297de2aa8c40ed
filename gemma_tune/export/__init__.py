"""Exporting a tuned run: merged weights (`merge`), a Hugging Face transformers checkpoint
(`hf_export`), a PEFT adapter (`peft_export`); `exporter` is what `python -m gemma_tune.export`
runs."""
