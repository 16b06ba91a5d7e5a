"""Forecast new data with a trained run (see README "Forecasting with a trained run").

    python forecast.py --run results/<run>                          # the next pred_len steps after the file
    python forecast.py --run results/<run> --data_path new.csv --plot forecast.png
    python forecast.py --run results/<run> --rolling --test_only    # the test windows, beside the truth, scored
"""

import sys

from timellm_launcher.commands import forecast as main

if __name__ == "__main__":
    sys.exit(main())
