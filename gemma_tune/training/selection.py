"""Which step's weights a run keeps, and when it stops early: `train.keep_best` and
`train.early_stopping_patience`.

    chosen = selection.Selection.from_state(state.get("selection"), keep_best, patience)
    improved = chosen.observe(step, {"val_loss": 1.9, ...})   # after each validation
    chosen.stopped                                            # patience ran out
    checkpoint state: chosen.to_state()                       # resumes exactly

Validation loss decides: a validation improves on the best so far when its `val_loss` is
strictly lower (the base model's validation before the first update does not count, so the
kept weights are always trained ones). With a patience of N, the run stops at the N-th
validation in a row without an improvement. The state is a small JSON dict that every
checkpoint holds, so a resumed run knows the best step and the count of validations without
improvement exactly as the stopped run did.
"""

from __future__ import annotations

import dataclasses
import math

LOSS = "val_loss"


@dataclasses.dataclass
class Selection:
    """The best validation so far and the validations since it.

    Attributes:
      keep_best: the run ends with the best step's weights (`train.keep_best`).
      patience: validations without improvement that stop the run; 0 never stops it.
      best_step: the step with the lowest validation loss so far (None before any).
      best_validation: that step's validation results (`val_*`).
      without_improvement: validations since the best one.
      stopped: the patience ran out (the run stops after this step).
    """

    keep_best: bool = False
    patience: int = 0
    best_step: int | None = None
    best_validation: dict = dataclasses.field(default_factory=dict)
    without_improvement: int = 0
    stopped: bool = False

    @classmethod
    def from_state(cls, state: dict | None, keep_best: bool, patience: int) -> Selection:
        """The selection a checkpoint recorded (`to_state`), or a fresh one without it; the
        settings come from the config, the running state from the checkpoint."""
        state = dict(state or {})
        return cls(
            keep_best=keep_best,
            patience=patience,
            best_step=state.get("best_step"),
            best_validation=dict(state.get("best_validation", {})),
            without_improvement=int(state.get("without_improvement", 0)),
            stopped=bool(state.get("stopped", False)),
        )

    @property
    def active(self) -> bool:
        """Whether either setting is on (otherwise the run keeps its last step, as always)."""
        return self.keep_best or self.patience > 0

    def to_state(self) -> dict:
        """The running state as JSON for a checkpoint."""
        return {
            "best_step": self.best_step,
            "best_validation": self.best_validation,
            "without_improvement": self.without_improvement,
            "stopped": self.stopped,
        }

    def observe(self, step: int, validation: dict, may_stop: bool = True) -> bool:
        """Records the validation of `step`; returns whether it is the new best.

        Args:
          step: the trained step the validation measured (> 0).
          validation: its results, holding `val_loss`.
          may_stop: whether running out of patience stops the run here (False for the
            validation at the end, after which nothing is left to stop).
        """
        loss = validation.get(LOSS, math.nan)
        best = self.best_validation.get(LOSS, math.inf)
        if math.isfinite(loss) and (self.best_step is None or loss < best):
            self.best_step, self.best_validation = step, dict(validation)
            self.without_improvement = 0
            return True
        self.without_improvement += 1
        if may_stop and self.patience and self.without_improvement >= self.patience:
            self.stopped = True
        return False

    def kept_step(self, last_step: int) -> int:
        """The step whose weights the run ends with: the best with `keep_best`, else the last."""
        if self.keep_best and self.best_step is not None:
            return self.best_step
        return last_step

    def summary(self, last_step: int) -> dict:
        """What result.json says about the choice: the kept step and why, why training
        stopped, and (when either setting is on) the best step and its loss."""
        best = self.keep_best and self.best_step is not None
        record = {
            "kept_step": self.kept_step(last_step),
            "kept_because": "best_val_loss" if best else "last_step",
            "stopped_because": "early_stopping" if self.stopped else "completed",
        }
        if self.active and self.best_step is not None:
            record["best_step"] = self.best_step
            record["best_val_loss"] = self.best_validation[LOSS]
            record["validations_without_improvement"] = self.without_improvement
        return record
