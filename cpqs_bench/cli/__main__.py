"""``python -m cpqs_bench.cli VERB ...`` — the entry ``accelerate launch`` uses for multi-process runs:

accelerate launch --multi_gpu --num_processes 2 -m cpqs_bench.cli finetune --selection S --out A [key=value ...]
"""

import sys

from cpqs_bench.cli import main

sys.exit(main())
