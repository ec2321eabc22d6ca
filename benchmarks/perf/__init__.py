"""Speed: training-step time and memory of every method, sampling throughput (``bench``), timing
and memory probes (``probe``), the csv and markdown report (``report``), the GPU check
(``gpu.sh``). ``python -m benchmarks.perf --help``."""
