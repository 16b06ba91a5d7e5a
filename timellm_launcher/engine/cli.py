"""What both command-line entry points share: quiet libraries, one-line user errors, exit codes."""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable

from timellm_launcher.core.errors import UserError, write_failure


def prepare_process(flush_denormals: bool = True) -> None:
    """What every entry point does first: keep the terminal for our own progress (no per-weight loading bars or
    library chatter) and set the CPU's subnormal handling before torch starts its thread pool."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    import torch
    import transformers

    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # DeepSpeed would warn that it fell back to CPU

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    from timellm_launcher.engine.runtime import flush_subnormals

    flush_subnormals(flush_denormals)


def run_cli(main: Callable[[], object]) -> int:
    """Run `main`; a UserError becomes one line on stderr and exit code 2, no traceback."""
    prepare_process()
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        failure = write_failure(err.filename or "a file", err)
        if failure is None:
            raise
        print(f"error: {failure}", file=sys.stderr)
        return 2
    return 0
