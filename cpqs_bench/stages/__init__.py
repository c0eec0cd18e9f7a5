"""Stages: one module per step kind, the same step classes for ``reproduce`` and for the verbs.

A step takes the config and its upstream *providers* (a step of the same pipeline, or
:class:`cpqs_bench.pipeline.Given` wrapping an artifact a verb read at the edge), derives its stage key from the config
sections it uses and the content keys of what it consumes, writes only its outputs, and returns an artifact
(:mod:`cpqs_bench.stages.artifacts`). The executor (:mod:`cpqs_bench.pipeline`) does the rest.

| module | steps |
|---|---|
| ``data`` | ``DataStep``: the pool, read once, in the project's format (+ the generated-negatives prompts) |
| ``negatives`` | ``NegativesStep``: weaker-model answers for CPQS pairs |
| ``train_selector`` | ``TrainSelectorStep``: the CPQS TextCNN (pool-disjoint pairs, or out of fold) |
| ``score`` | ``ScoreStep``: one selector over the pool |
| ``mods`` | ``ModsCoverageStep``, the seed-model fine-tune, ``ModsScoreStep`` |
| ``select`` | ``SelectStep``: an arm's kept examples |
| ``finetune`` | ``FinetuneStep``: one arm × seed under the frozen recipe |
| ``evaluate`` | ``EvaluateStep``: base or an arm × seed through lm-eval |
| ``judge`` | ``AnswersStep``, ``JudgeStep``: the pairwise LLM judge |
| ``report`` | ``write_leaderboard``: statistics and pages |
| ``verb`` | ``run_one``: a verb's one-step pipeline and the copy of its artifact to ``--out`` |
"""
