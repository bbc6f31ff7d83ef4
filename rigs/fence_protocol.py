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



def _parameter(name, getopt, ptype, default, desc, required=False, attrs=""):
    default = f' default="{default}"' if default is not None else ""
    return (f'\t<parameter name="{name}" unique="0" required="{int(required)}"{attrs}>\n'
            f'\t\t<getopt mixed="{getopt}" />\n\t\t<content type="{ptype}"{default} />\n'
            f'\t\t<shortdesc lang="en">{desc}</shortdesc>\n\t</parameter>\n')


ACTIONS = ("on", "off", "reboot", "status", "list", "list-status", "monitor", "metadata",
           "manpage", "validate-all")


def metadata(name, shortdesc, longdesc, plug_desc, parameters=()):
    """The fence-agents meta-data XML pcs and Pacemaker read: action, plug (and its old
    name port), the agent's own parameters ((name, getopt, type, default, shortdesc)
    tuples), verbose, and the actions both lab fence agents support ("on" is not run
    automatically: the lab boots nodes itself)."""
    body = _parameter("action", "-o, --action=[action]", "string", "reboot",
                      "Fencing action", required=True)
    body += _parameter("plug", "-n, --plug=[id]", "string", None, plug_desc,
                       required=True, attrs=' obsoletes="port"')
    body += _parameter("port", "-n, --plug=[id]", "string", None, plug_desc,
                       attrs=' deprecated="1"')
    body += "".join(_parameter(*spec) for spec in parameters)
    body += _parameter("verbose", "-v, --verbose", "boolean", None, "Verbose mode")
    actions = "".join(f'\t<action name="{a}"' + (' automatic="0"' if a == "on" else "")
                      + " />\n" for a in ACTIONS)
    return (f'<?xml version="1.0" ?>\n<resource-agent name="{name}" shortdesc="{shortdesc}">\n'
            f"<longdesc>{longdesc}</longdesc>\n"
            "<vendor-url>https://github.com/ocf-agents</vendor-url>\n"
            f"<parameters>\n{body}</parameters>\n<actions>\n{actions}</actions>\n"
            "</resource-agent>\n")
