"""``texbridge batch``'s machinery, shared by the sequential loop and the Ray scheduler.

- ``engine.batch.manifest``: the folder, the prompts manifest (JSON or CSV), shards, and the
  validated plan (every bad row reported at once, before anything runs).
- ``engine.batch.work``: texture one asset in its job folder (resume from its checkpoint,
  keep the prior loaded between assets); the state words.
- ``engine.batch.summary``: ``batch_summary.json``, the HTML report and the batch progress bar.
- ``engine.batch.ray_backend``: the Ray scheduler (imported only with ``--ray``; needs the
  ``texbridge[ray]`` extra). Nothing else here imports ``ray``.
"""
