"""What a run's outputs mean, and how its probabilities become decisions, for one image.

The rule is training's (README, "Run length, validation and decisions"): binary and multilabel
runs decide ``probability >= threshold`` per label, at the thresholds chosen on the run's
validation split (stored in ``adapter_config.json``); multiclass runs take the argmax. The same
:class:`RunOutputs` writes the rows of ``medpeft predict`` and the answers of ``medpeft serve``,
so the two cannot disagree.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..runtime.metrics import threshold_decisions


@dataclass(frozen=True)
class RunOutputs:
    task: str  # binary | multiclass | multilabel
    columns: tuple[str, ...]  # what each output column scores (binary: the positive class only)
    classes: tuple[str, ...]  # binary: (negative, positive); multiclass: the classes; multilabel: = columns
    thresholds: dict[str, float] | None  # {column: threshold} chosen on validation; None for multiclass

    def __post_init__(self):
        if self.task != "multiclass" and (self.thresholds is None or set(self.thresholds) != set(self.columns)):
            raise ValueError(f"a {self.task} run needs one decision threshold per label {list(self.columns)}, "
                             f"got {self.thresholds}")

    @classmethod
    def from_adapter(cls, adapter: dict, thresholds: dict[str, float] | None) -> "RunOutputs":
        """From ``adapter_config.json`` (task, labels, label_names) and the run's thresholds."""
        task = adapter.get("task") or ("binary" if adapter["num_outputs"] == 1 else "multilabel")
        columns = tuple(adapter.get("labels") or (f"output_{k}" for k in range(adapter["num_outputs"])))
        classes = tuple(adapter.get("label_names") or ())
        if task == "binary" and len(classes) != 2:  # a run saved before label_names were stored
            classes = (f"not {columns[0]}", columns[0])
        return cls(task, columns, classes or columns, thresholds if task != "multiclass" else None)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """(N, K) probabilities -> (N, K) 0/1 decisions at the thresholds; multiclass: (N, 1) argmax."""
        scores = np.asarray(scores, dtype=np.float64)  # as the thresholds were compared when chosen
        if self.task == "multiclass":
            return scores.argmax(axis=1)[:, None]
        return threshold_decisions(scores, np.array([self.thresholds[c] for c in self.columns]))

    def prediction(self, decided: np.ndarray) -> str | list[str]:
        """One image's decisions in words: a class name, or the list of positive labels."""
        if self.task == "multiclass":
            return self.classes[int(decided[0])]
        if self.task == "binary":
            return self.classes[int(decided[0])]
        return [c for c, d in zip(self.columns, decided) if d]

    def record(self, scores: np.ndarray) -> dict:
        """One image's answer: probabilities per label, decisions (not for multiclass), prediction."""
        decided = self.decide(scores[None, :])[0]
        answer = {"probabilities": {c: float(p) for c, p in zip(self.columns, scores)}}
        if self.task != "multiclass":
            answer["decisions"] = {c: int(d) for c, d in zip(self.columns, decided)}
        answer["prediction"] = self.prediction(decided)
        return answer

    def csv_header(self) -> list[str]:
        decisions = [] if self.task == "multiclass" else [f"decision_{c}" for c in self.columns]
        return [f"prob_{c}" for c in self.columns] + decisions + ["prediction"]

    def csv_values(self, scores: np.ndarray) -> list[str]:
        answer = self.record(scores)
        values = [repr(float(p)) for p in scores]  # repr: the float32 probability, round-trippable
        values += [str(d) for d in answer.get("decisions", {}).values()]
        prediction = answer["prediction"]
        return values + [";".join(prediction) if isinstance(prediction, list) else prediction]

    def describe(self) -> dict:
        """For listings (``GET /v1/models``): task, labels, classes and thresholds."""
        return {"task": self.task, "labels": list(self.columns), "classes": list(self.classes),
                "thresholds": self.thresholds}
