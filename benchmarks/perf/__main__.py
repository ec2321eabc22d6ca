import sys

from benchmarks.perf.bench import main

main(sys.argv[1:])
