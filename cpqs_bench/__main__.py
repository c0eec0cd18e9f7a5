import sys

from cpqs_bench.cli import main

sys.exit(main())
