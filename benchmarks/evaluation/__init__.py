"""The evaluation stage: samplers and solver baselines (``evaluate``), the scorer of a dataset
(``scorer``), the metrics (``metrics``, and the sliced W2 of ``sliced``) and the convergence
probes that run inside training (``convergence``)."""
