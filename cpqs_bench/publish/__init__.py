"""Publishing and tracking: the Hub (model repos, results dataset, leaderboard Space) and W&B.

Modules (import the one you need; this package file imports nothing, so the pipeline can use the tracker without
loading huggingface_hub):

* :mod:`cpqs_bench.publish.config`   ``PublishConfig`` (the ``publish`` section; a leaf dataclass module)
* :mod:`cpqs_bench.publish.tracking` ``Tracker``: one W&B run per pipeline stage that can never fail the pipeline
* :mod:`cpqs_bench.publish.hub`      folders → one commit per repo (huggingface_hub ``create_commit``), dry runs
* :mod:`cpqs_bench.publish.run`      ``publish_run(run_dir, cfg, dry_run=...)``: a finished experiment → repos
"""
