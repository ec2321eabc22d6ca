"""The training stage: every object of a run (``factory``), THE training loop (``loop``), the
evaluation EMA (``ema``), data parallelism (``distributed``) and the networks (``nets``)."""
