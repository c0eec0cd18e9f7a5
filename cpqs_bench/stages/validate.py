"""The validate stage (issue #29): every scored selector (+ longest, random) on the validity tracks — planted defects
and strong-vs-weak answer pairs — before any fine-tune (:func:`cpqs_bench.validity.run.validate`); CPQS with the CNN
this run trained. Its ``validity.json`` goes on the leaderboard, with how well it predicts the fine-tuned outcome."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from cpqs_bench.config import Config
from cpqs_bench.io import read_json
from cpqs_bench.rundir import Stage
from cpqs_bench.stages.common import Produces, section_key
from cpqs_bench.stages.score import selector_code

if TYPE_CHECKING:
    from cpqs_bench.publish.tracking import Tracker
    from cpqs_bench.selectors.base import ModelLoader
    from cpqs_bench.stages.artifacts import FileArtifact
    from cpqs_bench.stages.common import Provides


OUT = "validity.json"


@dataclass
class ValidateStep(Produces[dict[str, Any]]):
    cfg: Config
    sections: ClassVar[tuple[str, ...]] = ("validate", "selectors", "model", "prompt")
    selectors: Sequence[str]
    checkpoint: Provides[FileArtifact] | None = (
        None  # provider of the CPQS checkpoint (train-selector), when cpqs is screened
    )
    loader: ModelLoader | None = None
    name: str = "validate"
    label: str = "validate (selector validity tracks)"
    track: bool = False

    def __post_init__(self) -> None:
        code, files = ["cpqs_bench.validity.run", "cpqs_bench.stages.validate"], []
        for name in self.selectors:
            own, extra = selector_code(self.cfg, name)
            code += [m for m in own if m not in code]
            files += extra
        self.code, self.files = code, files

    def inputs(self) -> dict[str, Any]:
        return {
            "selectors": list(self.selectors),
            **section_key(self.cfg, self.sections, names={"selectors": "settings"}),
            "checkpoint": self.checkpoint.output.key if self.checkpoint is not None else None,
        }

    def run(self, st: Stage, tracker: Tracker | None) -> dict[str, Any]:
        from cpqs_bench.validity.run import validate

        ckpt = self.checkpoint.output.path if self.checkpoint is not None else None
        doc = validate(self.cfg, list(self.selectors), st.path, checkpoint=ckpt, loader=self.loader)
        return {"cost": doc.get("cost"), "model": doc.get("model")}

    def collect(self, st: Stage) -> dict[str, Any]:
        return read_json(st.file(OUT))
