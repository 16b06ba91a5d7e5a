"""Train and test Time-LLM. `python run_main.py` alone runs the embedded default (see README).

    accelerate launch run_main.py --data ETTh1 --features M ...   # 1..N processes
"""

import sys

from timellm_launcher.commands import train as main

if __name__ == "__main__":
    sys.exit(main())
