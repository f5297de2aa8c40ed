"""Export a tuned run: `python -m gemma_tune.export --run=RUN_DIR --to=FORMAT --out=DIR`.

    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=exported/hf              # merged
    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=exported/hf --dtype=bfloat16
    python -m gemma_tune.export --run=RUN_DIR --to=keras --out=exported/keras        # merged
    python -m gemma_tune.export --run=RUN_DIR --to=hf --base_only --out=exported/base
    python -m gemma_tune.export --run=RUN_DIR --to=peft --out=exported/adapter
    python -m gemma_tune.export --run=RUN_DIR --to=gguf --out=exported/gguf --gguf_type=q8_0
    python -m gemma_tune.export --run=RUN_DIR --to=hf --out=exported/hf --push_to_hub=ORG/NAME

`--to=hf` writes the tuned model with LoRA merged as a transformers directory, `--to=keras` the
same merged model as a KerasHub preset, `--to=peft` only the adapter (for the base exported
with `--to=hf --base_only`), `--to=gguf` one GGUF file and an Ollama Modelfile;
`--push_to_hub` uploads the export with a model card. The export is written next to `--out`
and renamed into place at the end; a non-empty `--out` is refused unless `--overwrite` is
given. Details:
`gemma_tune.export.exporter`.
"""

from absl import app, flags, logging

from gemma_tune import command_line, console

FLAGS = flags.FLAGS
flags.DEFINE_string("run", None, "The run directory to export (written by gemma_tune.train).")
flags.DEFINE_enum("to", None, ["hf", "peft", "keras", "gguf"], "Export format.")
flags.DEFINE_string("out", None, "The directory to create.")
flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Weights' dtype (hf, keras).")
flags.DEFINE_bool("overwrite", False, "Replace a non-empty --out.")
flags.DEFINE_bool("base_only", False, "Export the run's base model without its adapter.")
flags.DEFINE_string("base_model", None, "--to=peft: the base's path or Hub id, recorded.")
flags.DEFINE_enum("gguf_type", "f16", ["f16", "q8_0", "f32"], "--to=gguf: the weights' type.")
flags.DEFINE_string("push_to_hub", None, "Upload the export to this Hub repo (ORG/NAME).")
flags.DEFINE_bool("private", False, "--push_to_hub: create the repository private.")


def main(argv) -> int:
    """Runs `exporter.export` with the flags, then says how to load the result; returns the
    exit code. A bad combination of flags or a missing or damaged run is one line on stderr
    and exit 1 (`command_line`). Loading and writing messages go to stderr; stdout holds the
    result: where the export is, how to load it and, with `--push_to_hub`, the Hub repo."""
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    for name in ("run", "to", "out"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    command_line.import_keras_hub_quietly()
    from gemma_tune.export import exporter

    with console.status_to_stderr():
        out = exporter.export(
            FLAGS.run,
            FLAGS.to,
            FLAGS.out,
            dtype=FLAGS.dtype,
            overwrite=FLAGS.overwrite,
            base_only=FLAGS.base_only,
            base_model=FLAGS.base_model,
            gguf_type=FLAGS.gguf_type,
            push_to_hub=FLAGS.push_to_hub,
            private=FLAGS.private,
        )
    print(f"Exported to {out}")
    print(exporter.HINTS[FLAGS.to].format(out=out, run=FLAGS.run))
    if FLAGS.push_to_hub:
        print(f"Uploaded to the Hub: {FLAGS.push_to_hub}")
    return 0


if __name__ == "__main__":
    command_line.run(main)
