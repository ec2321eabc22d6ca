"""The data stage: the dataset registry (``registry``: what each dataset is, its ``Problem`` of
one seed), the loaders of the files (``loaders``), the minibatch sampler (``batches``) and the
CIFAR-10 Gaussian-mixture oracle (``cifar_gmm``; its fit is committed as
``cifar_gmm_fit.npz``, which ``python -m benchmarks.data.fit_cifar_gmm`` rewrites)."""
