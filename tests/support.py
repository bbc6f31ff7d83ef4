"""Small helpers shared by the tests (import as `from support import ...`)."""


def exit_reason(result):
    """The ocf-exit-reason Pacemaker would show, or None."""
    stderr = result.stderr if hasattr(result, "stderr") else result.err
    for line in stderr.splitlines():
        if line.startswith("ocf-exit-reason:"):
            return line[len("ocf-exit-reason:"):]
    return None
