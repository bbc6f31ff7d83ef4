"""python3 -m ocf_agents install|uninstall|list|metadata|migrate

install writes one small executable per agent into
$OCF_ROOT/resource.d/pyha/. Each wrapper runs the interpreter isolated (-I:
no PYTHON* variables, no user site; -S: no site-packages scan, which costs
time on every monitor) and puts the directory this package was installed
from first on sys.path, so the agents work from site-packages or from a
source checkout alike.
"""

import argparse
import importlib.util
import os
import sys

PROVIDER = "pyha"
AGENTS = ("nfsserver", "nfsexport", "nfsnotify", "drbd", "mfsmaster")
MARKER = "# installed by ocf_agents"
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def available_agents():
    return [a for a in AGENTS if importlib.util.find_spec(f"ocf_agents.{a}") is not None]


def default_python():
    # The agents are written for Debian's interpreter; use it when it is there.
    return "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable


def package_parent(destdir):
    """The directory the wrappers put on sys.path: this package's own, less the
    staging root when the package was itself staged there (a Debian build runs
    install from debian/<package>/usr/lib/python3/dist-packages)."""
    if destdir:
        root = os.path.abspath(destdir)
        if os.path.commonpath([root, PACKAGE_PARENT]) == root:
            return os.path.normpath(os.path.join("/", os.path.relpath(PACKAGE_PARENT, root)))
    return PACKAGE_PARENT


def wrapper_text(agent, python, parent=PACKAGE_PARENT):
    return (f"#!{python} -IS\n"
            f"{MARKER}: ocf:{PROVIDER}:{agent}\n"
            "import sys\n"
            f"sys.path.insert(0, {parent!r})\n"
            f"from ocf_agents.{agent} import AGENT\n"
            "AGENT.main()\n")


def provider_dir(args):
    return os.path.join(args.destdir or "/", (args.ocf_root or "/usr/lib/ocf").lstrip("/"),
                        "resource.d", PROVIDER)


def install(args):
    target = provider_dir(args)
    os.makedirs(target, mode=0o755, exist_ok=True)
    for agent in available_agents():
        path = os.path.join(target, agent)
        tmp = path + ".new"
        with open(tmp, "w") as f:
            f.write(wrapper_text(agent, args.python or default_python(),
                                 package_parent(args.destdir)))
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        print(f"installed ocf:{PROVIDER}:{agent} -> {path}")
    return 0


def uninstall(args):
    target = provider_dir(args)
    for agent in AGENTS:
        path = os.path.join(target, agent)
        try:
            with open(path) as f:
                ours = MARKER in f.read(4096)
        except FileNotFoundError:
            continue
        if ours:
            os.unlink(path)
            print(f"removed {path}")
        else:
            print(f"left {path}: not installed by ocf_agents", file=sys.stderr)
    try:
        os.rmdir(target)
    except OSError:
        pass
    return 0


def metadata(args):
    """Print, write or check the committed metadata/<agent>.xml files."""
    import importlib
    stale = []
    for agent in args.agents or available_agents():
        xml = importlib.import_module(f"ocf_agents.{agent}").AGENT.metadata_xml()
        if args.write or args.check:
            path = os.path.join(args.write or args.check, f"{agent}.xml")
            if args.write:
                with open(path, "w") as f:
                    f.write(xml)
            else:
                try:
                    with open(path) as f:
                        current = f.read()
                except FileNotFoundError:
                    current = None
                if current != xml:
                    stale.append(path)
        else:
            sys.stdout.write(xml)
    for path in stale:
        print(f"{path} differs from the generated meta-data", file=sys.stderr)
    return 1 if stale else 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m ocf_agents")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func in (("install", install), ("uninstall", uninstall)):
        p = commands.add_parser(name, help=f"{name} the ocf:{PROVIDER}:* agents")
        p.add_argument("--ocf-root", default=os.environ.get("OCF_ROOT"),
                       help="OCF root (default $OCF_ROOT or /usr/lib/ocf)")
        p.add_argument("--destdir", default="", help="staging root for packaging")
        p.add_argument("--python", help="interpreter for the wrappers (default /usr/bin/python3)")
        p.set_defaults(func=func)
    p = commands.add_parser("migrate", help="print a pcs script equivalent to a heartbeat "
                            "haresources file or a keepalived.conf")
    p.add_argument("kind", choices=("haresources", "keepalived"))
    p.add_argument("file")
    p.set_defaults(func=lambda args: __import__("ocf_agents.migrate").migrate.main(
        args.kind, args.file))
    p = commands.add_parser("list", help="list the agents")
    p.set_defaults(func=lambda args: print("\n".join(available_agents())) or 0)
    p = commands.add_parser("metadata", help="print, --write DIR or --check DIR the meta-data")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="DIR")
    group.add_argument("--check", metavar="DIR")
    p.add_argument("agents", nargs="*")
    p.set_defaults(func=metadata)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
