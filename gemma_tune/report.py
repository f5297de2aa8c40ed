"""The run report: `python -m gemma_tune.report --run=RUN_DIR` (`gemma_tune.reporting.report`)."""

from absl import app, flags

from gemma_tune.reporting import report

if __name__ == "__main__":
    flags.DEFINE_string("run", None, "The run directory to report on.", required=True)
    app.run(report.main)
