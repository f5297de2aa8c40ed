"""`python -m gemma_tune.export --run=RUN_DIR --to=hf|peft|keras --out=DIR` (see `exporter`)."""

import sys

from absl import app

from gemma_tune.export import exporter

if __name__ == "__main__":
    exporter.define_flags()
    app.run(lambda argv: sys.exit(exporter.main(argv)))
