"""The fence-agents calling convention, shared by the lab's two fence agents
(lab/fencing.py for the namespace lab, rigs/vm/power.py for the VMs).

Pacemaker's fencer passes options as `key=value` lines on stdin; people type them on
the command line (-o ACTION -n PLUG ...).  Command-line options win when there are any.
"""


def parse_options(argv, stdin, names, switches=("-v", "--verbose")):
    """{key: value} from argv (names: flag -> key; `--flag=value` or `--flag value`) or,
    with no argv, from stdin's key=value lines.  A switch sets "verbose"."""
    opts = {}
    if argv:
        it = iter(argv)
        for arg in it:
            flag, eq, value = arg.partition("=")
            if flag in switches:
                opts["verbose"] = "1"
            elif flag in names:
                opts[names[flag]] = value if eq else next(it, "")
    else:
        for line in stdin:
            key, eq, value = line.strip().partition("=")
            if eq and not key.startswith("#"):
                opts[key.strip()] = value.strip()
        if "option" in opts and "action" not in opts:   # the old name of "action"
            opts["action"] = opts["option"]
    return opts
