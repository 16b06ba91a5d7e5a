"""The one exception type that means "the user asked for something invalid", and the write failures that are the
user's environment (a full disk, a quota, a file size limit, a read-only or forbidden folder), not a bug."""

from __future__ import annotations

import errno
import os
import re

WRITE_ERRNOS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM)


class UserError(Exception):
    """Bad flag, file or data: shown as one line, no traceback, exit code 2."""


def write_failure(path: object, err: BaseException) -> UserError | None:
    """A UserError naming the file and the cause when `err` is a failed write of the environment's making (an
    OSError, or a library's error quoting one, as safetensors' "os error 28" does); None for anything else."""
    code = err.errno if isinstance(err, OSError) else None
    if code is None:
        found = re.search(r"os error (\d+)|code: (\d+)", str(err))
        code = int(found.group(1) or found.group(2)) if found else None
    if code not in WRITE_ERRNOS:
        return None
    return UserError(f"cannot write {path}: {os.strerror(code)}; free space or fix the folder's permissions, then "
                     "run again (earlier runs and checkpoints are intact)")
