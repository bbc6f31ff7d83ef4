"""The OCF shim: everything an agent needs from Pacemaker's side, written once.

An agent module declares itself::

    AGENT = Agent(
        name="nfsexport", shortdesc="...", longdesc="...",
        parameters=[Parameter("directory", required=True, check=parse_dirs, ...)],
        actions=[Action("start", timeout=40, handler=start),
                 Action("monitor", timeout=20, interval=10, handler=monitor), ...],
        validate=check_environment,       # optional, runs before most actions
    )

and its executable calls ``AGENT.main()``. Each handler receives a ``Resource``
(parameters already parsed and validated, Pacemaker's environment, logging,
command running, state files, node attributes) and returns an OCF exit code,
or raises ``OCFError(code, reason)``.

Start-up cost matters: Pacemaker runs every monitor as a new process, forever.
This module imports only what every action needs (os, sys, time); commands are
run through os.posix_spawn rather than the subprocess module (10 ms of imports),
and nothing else is imported until an action asks for it.
"""

import os
import stat
import sys
import time

# --- exit codes -------------------------------------------------------------
SUCCESS = 0
ERR_GENERIC = 1
ERR_ARGS = 2
ERR_UNIMPLEMENTED = 3
ERR_PERM = 4
ERR_INSTALLED = 5
ERR_CONFIGURED = 6
NOT_RUNNING = 7
RUNNING_PROMOTED = 8
FAILED_PROMOTED = 9
DEGRADED = 190
DEGRADED_PROMOTED = 191

EXIT_CODE_NAMES = {
    0: "OCF_SUCCESS", 1: "OCF_ERR_GENERIC", 2: "OCF_ERR_ARGS",
    3: "OCF_ERR_UNIMPLEMENTED", 4: "OCF_ERR_PERM", 5: "OCF_ERR_INSTALLED",
    6: "OCF_ERR_CONFIGURED", 7: "OCF_NOT_RUNNING", 8: "OCF_RUNNING_PROMOTED",
    9: "OCF_FAILED_PROMOTED", 190: "OCF_DEGRADED", 191: "OCF_DEGRADED_PROMOTED",
}

# Actions that describe the agent rather than act on a resource: they never
# look at parameters, so a broken configuration cannot stop them working.
INFORMATIONAL_ACTIONS = ("meta-data", "usage", "methods")

TRUE_WORDS = frozenset(("1", "yes", "true", "on", "y", "ja"))
FALSE_WORDS = frozenset(("0", "no", "false", "off", "n", "nein", ""))

# Commands are looked up on PATH; Pacemaker's PATH can be minimal, so make sure
# the usual sbin directories are there (as ocf-shellfuncs does).
_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


# Pacemaker keeps the first 128 characters of an exit reason (EXIT_REASON_MAX_LEN in
# lib/services/services_linux.c); pcs status shows that. A reason should say what is
# wrong within that, so a value quoted in it is shortened (shown()), and the shim cuts
# any reason longer than EXIT_REASON_MAX in the middle, keeping its start (what) and
# its end (why), so no input can make a reason (or its log line) of unbounded length.
EXIT_REASON_MAX = 256
SHOWN_MAX = 24


def shown(value, limit=SHOWN_MAX):
    """value quoted for a message: repr, shortened to limit characters with its length
    said ('xxxxx...' (100000 characters)), so a huge value cannot drown the reason."""
    text = str(value)
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"


def bounded(text, limit=EXIT_REASON_MAX):
    """text on one line, cut in the middle to at most about limit characters."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    tail = limit // 4
    cut = f" [... {len(line) - (limit - tail)} of {len(line)} characters cut ...] "
    return line[:limit - tail - len(cut)] + cut + line[-tail:]


class OCFError(Exception):
    """Ends the action with ``code``; ``reason`` becomes the ocf-exit-reason."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class AttributeUnreadable(OCFError):
    """crm_attribute could not answer a query (the CIB is unreachable, it hung): not the
    same as an attribute that is not set, which a caller may take for a default."""


# crm_attribute --query of an attribute that is not set: CRM_EX_NOSUCH (105) in Pacemaker
# 2.x, 6 (ENXIO) in 1.1. Anything else means the CIB did not answer.
ATTRIBUTE_NOT_SET = (105, 6)


def have_binary(name):
    """Whether name is an executable on PATH (without forking).

    ocf-tester sets OCF_TESTER_FAIL_HAVE_BINARY to check how an agent behaves
    when its tools are missing; honour it as ocf-shellfuncs does.
    """
    if os.environ.get("OCF_TESTER_FAIL_HAVE_BINARY"):
        return False
    if "/" in name:
        return os.access(name, os.X_OK)
    _ensure_path()
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in os.environ.get("PATH", "").split(":") if d)


def is_true(value):
    return str(value).strip().lower() in TRUE_WORDS


# --- declarations -------------------------------------------------------------
class Parameter:
    """One resource parameter.

    type is one of string, integer, boolean, time (seconds; "10s", "2min",
    "500ms" or a bare number). ``check`` receives the typed value and returns
    the value the handlers will see (it may normalise, e.g. split a list), or
    raises ValueError with a message that names what is wrong.
    """

    TYPES = ("string", "integer", "boolean", "time")

    def __init__(self, name, type="string", default=None, required=False, unique=False,
                 shortdesc="", longdesc="", check=None):
        if type not in self.TYPES:
            raise ValueError(f"parameter {name}: unknown type {type}")
        self.name = name
        self.type = type
        self.default = default
        self.required = required
        self.unique = unique
        self.shortdesc = shortdesc
        self.longdesc = longdesc or shortdesc
        self.check = check

    def parse(self, raw):
        """Typed, checked value from the raw environment string (None = unset)."""
        if raw is None:
            if self.required:
                raise ValueError("is required but not set")
            raw = self.default
            if raw is None:
                return None
        raw = str(raw)
        if "\0" in raw:
            raise ValueError("contains a NUL byte")
        if self.type == "integer":
            try:
                value = int(raw.strip(), 10)
            except ValueError:
                raise ValueError(f"{shown(raw)} is not an integer") from None
        elif self.type == "boolean":
            word = raw.strip().lower()
            if word in TRUE_WORDS:
                value = True
            elif word in FALSE_WORDS:
                value = False
            else:
                raise ValueError(f"{shown(raw)} is not a boolean (use true or false)")
        elif self.type == "time":
            value = parse_time(raw)
        else:
            value = raw
        if self.check is not None:
            value = self.check(value)
        return value


def parse_time(text):
    """Seconds from a Pacemaker-style time: "90", "90s", "2min", "500ms", "1h"."""
    text = text.strip().lower()
    units = (("ms", 0.001), ("msec", 0.001), ("min", 60), ("m", 60), ("sec", 1), ("s", 1),
             ("hr", 3600), ("h", 3600))
    factor = 1
    for suffix, unit_factor in sorted(units, key=lambda u: -len(u[0])):
        if text.endswith(suffix):
            text, factor = text[: -len(suffix)].strip(), unit_factor
            break
    try:
        value = float(text) * factor
    except ValueError:
        raise ValueError(f"{shown(text)} is not a time (e.g. 30, 30s, 2min, 500ms)") from None
    if value < 0 or value != value or value == float("inf"):
        raise ValueError("must be a finite, non-negative time")
    return value


class Action:
    """One action: its advertised timeout/interval/depth/role and its handler."""

    def __init__(self, name, timeout, handler=None, interval=None, depth=None, role=None,
                 advertise=True):
        self.name = name
        self.timeout = timeout
        self.handler = handler
        self.interval = interval
        self.depth = depth
        self.role = role
        self.advertise = advertise


class Agent:
    """A declared agent. ``main()`` dispatches one action and exits."""

    def __init__(self, name, shortdesc, longdesc, parameters, actions, validate=None,
                 version="1.0", commands=None):
        self.name = name
        # Helper commands that are not OCF actions (e.g. a DRBD handler run by drbdadm):
        # name -> function(argv) returning an exit code. They run before any parameter
        # parsing, get no Resource, and are not advertised in the meta-data.
        self.commands = dict(commands or {})
        self.version = version
        self.shortdesc = shortdesc
        self.longdesc = longdesc
        self.parameters = list(parameters)
        self.validate = validate
        self.actions = list(actions)
        names = {a.name for a in self.actions}
        for builtin, timeout in (("meta-data", 5), ("validate-all", 20)):
            if builtin not in names:
                self.actions.append(Action(builtin, timeout=timeout))
        self.handlers = {a.name: a.handler for a in self.actions}

    # -- meta-data ---------------------------------------------------------
    def metadata_xml(self):
        """Meta-data valid against ra-api-1.dtd and resource-agents' metadata.rng.

        Both schemas must accept it (ocf-tester uses the DTD, Pacemaker and
        pcs read it), so "time" parameters are declared as strings: the DTD
        knows "time", the RELAX NG schema only "second".
        """
        out = ['<?xml version="1.0"?>',
               '<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">',
               f'<resource-agent name="{_xml(self.name)}" version="{_xml(self.version)}">',
               "<version>1.0</version>",
               f'<longdesc lang="en">\n{_xml(self.longdesc.strip())}\n</longdesc>',
               f'<shortdesc lang="en">{_xml(self.shortdesc)}</shortdesc>',
               "<parameters>"]
        for p in self.parameters:
            content_type = "string" if p.type == "time" else p.type
            default = ""
            if p.default is not None:
                default = f' default="{_xml(_format_default(p.default))}"'
            out += [f'<parameter name="{_xml(p.name)}" unique="{int(p.unique)}" '
                    f'required="{int(p.required)}">',
                    f'<longdesc lang="en">\n{_xml(p.longdesc.strip())}\n</longdesc>',
                    f'<shortdesc lang="en">{_xml(p.shortdesc)}</shortdesc>',
                    f'<content type="{content_type}"{default}/>',
                    "</parameter>"]
        out += ["</parameters>", "<actions>"]
        for a in self.actions:
            if not a.advertise:
                continue
            attrs = f'name="{a.name}" timeout="{_seconds(a.timeout)}"'
            if a.interval is not None:
                attrs += f' interval="{_seconds(a.interval)}"'
            if a.depth is not None:
                attrs += f' depth="{a.depth}"'
            if a.role is not None:
                attrs += f' role="{a.role}"'
            out.append(f"<action {attrs}/>")
        out += ["</actions>", "</resource-agent>", ""]
        return "\n".join(out)

    def usage(self):
        names = "|".join(a.name for a in self.actions)
        return f"usage: {self.name} {{{names}}}\n"

    # -- dispatch ----------------------------------------------------------
    def main(self, argv=None):
        sys.exit(self.run(sys.argv[1:] if argv is None else argv))

    def run(self, args):
        """Run the action named by args[0] (or __OCF_ACTION); return its exit code."""
        action = args[0] if args else os.environ.get("__OCF_ACTION", "")
        if action in ("meta-data",):
            sys.stdout.write(self.metadata_xml())
            return SUCCESS
        if action in ("usage", "help", "-h", "--help"):
            sys.stdout.write(self.usage())
            return SUCCESS
        if action == "methods":
            sys.stdout.write("\n".join(a.name for a in self.actions) + "\n")
            return SUCCESS
        if action in self.commands:
            return _code(self.commands[action](args[1:]))
        if action not in self.handlers:
            sys.stderr.write(self.usage())
            return ERR_UNIMPLEMENTED if action else ERR_ARGS
        res = Resource(self, action)
        try:
            try:
                code = self._run_action(res, action)
            except OCFError as err:
                res.exit_reason(err.reason)
                code = err.code
            except KeyboardInterrupt:
                res.exit_reason(f"{action} interrupted")
                code = ERR_GENERIC
            except OSError as err:
                # The environment, not the agent: an unwritable state directory, a
                # full disk, a file where a directory belongs. Name it plainly.
                where = f" ({err.filename})" if err.filename else ""
                res.exit_reason(f"{action}: {err.strerror or err}{where}")
                res.log.debug_traceback()
                code = ERR_GENERIC
            except Exception as err:  # noqa: BLE001 - an agent must never die with a traceback
                res.exit_reason(f"{action} failed unexpectedly: {type(err).__name__}: {err}")
                res.log.debug_traceback()
                code = ERR_GENERIC
            res.trace(f"exit {code} ({EXIT_CODE_NAMES.get(code, '?')})")
        finally:
            res.close()
        return code

    def _run_action(self, res, action):
        try:
            res.params = self._parse_parameters()
        except OCFError as err:
            if action == "stop":
                # Pacemaker stops with the parameters the resource was started
                # with, so a stop that cannot parse its parameters is for a
                # resource that never started.
                res.log.warning(f"stop with unusable parameters ({err.reason}): nothing to stop")
                return SUCCESS
            raise
        if self.validate is not None and action not in ("stop",):
            self.validate(res)
        if action == "validate-all":
            handler = self.handlers.get(action)
            return SUCCESS if handler is None else _code(handler(res))
        return _code(self.handlers[action](res))

    def _parse_parameters(self):
        values = Params()
        for p in self.parameters:
            raw = os.environ.get("OCF_RESKEY_" + p.name)
            if raw == "":
                raw = None  # empty means unset, as in the shell agents
            try:
                setattr(values, p.name, p.parse(raw))
            except ValueError as err:
                raise OCFError(ERR_CONFIGURED, f"parameter {p.name}: {err}") from None
        return values


class Params:
    """Parsed parameter values, as attributes."""

    def __repr__(self):
        return f"Params({vars(self)!r})"


def _code(value):
    return SUCCESS if value is None else int(value)


def _xml(text):
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


def _format_default(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _seconds(value):
    if isinstance(value, str):
        return value
    return f"{int(value)}s" if float(value).is_integer() else f"{int(value * 1000)}ms"


# --- the running action -------------------------------------------------------
class Resource:
    """What a handler sees: parameters, Pacemaker's environment and the helpers."""

    def __init__(self, agent, action):
        env = os.environ
        self.agent = agent
        self.action = action
        self.params = None
        self._node_name = None
        self.started = time.monotonic()
        self.instance = env.get("OCF_RESOURCE_INSTANCE") or agent.name
        self.type = env.get("OCF_RESOURCE_TYPE") or agent.name
        self.interval_ms = _int_env("OCF_RESKEY_CRM_meta_interval", 0)
        self.timeout = _int_env("OCF_RESKEY_CRM_meta_timeout", 0) / 1000.0 or self._declared_timeout()
        self.deadline = self.started + self.timeout
        self.check_level = _int_env("OCF_CHECK_LEVEL", 0)
        self.state_dir = env.get("HA_RSCTMP") or "/run/resource-agents"
        _ensure_path()
        self.log = Log(agent.name, self.instance, action)

    def _declared_timeout(self):
        for a in self.agent.actions:
            if a.name == self.action:
                return float(a.timeout)
        return 20.0

    # -- Pacemaker's environment -------------------------------------------
    @property
    def is_probe(self):
        """A one-off monitor (Pacemaker's probe): interval 0 or unset."""
        return self.action == "monitor" and self.interval_ms == 0

    def meta(self, name, default=None):
        """A Pacemaker meta attribute, e.g. meta("clone_max") or meta("notify")."""
        return os.environ.get("OCF_RESKEY_CRM_meta_" + name.replace("-", "_"), default)

    @property
    def is_clone(self):
        return self.meta("clone") is not None or self.meta("clone_max") is not None

    @property
    def is_promotable(self):
        return is_true(self.meta("promotable", "false")) or self.meta("promoted_max") is not None \
            or self.meta("master_max") is not None

    @property
    def notify_type(self):
        return self.meta("notify_type", "")

    @property
    def notify_operation(self):
        return self.meta("notify_operation", "")

    def notify_unames(self, kind):
        """Node names from Pacemaker's notify lists: kind is start, stop, promote,
        demote, active, inactive, promoted (alias master) or unpromoted (slave)."""
        keys = [kind]
        aliases = {"promoted": "master", "unpromoted": "slave", "master": "promoted",
                   "slave": "unpromoted"}
        if kind in aliases:
            keys.append(aliases[kind])
        for key in keys:
            value = self.meta(f"notify_{key}_uname")
            if value is not None:
                return value.split()
        return []

    @property
    def node_name(self):
        """The local node's cluster name (CRM_meta_on_node, else crm_node -n, else uname)."""
        if self._node_name is None:
            name = self.meta("on_node")
            if not name:
                result = self.run(["crm_node", "-n"], timeout=5, quiet=True, missing_ok=True)
                name = result.out.strip() if result.rc == 0 else ""
            self._node_name = name or os.uname().nodename
        return self._node_name

    @property
    def instance_without_clone_suffix(self):
        name, sep, number = self.instance.rpartition(":")
        return name if sep and number.isdigit() else self.instance

    def time_left(self):
        return self.deadline - time.monotonic()

    # -- reporting ---------------------------------------------------------
    def exit_reason(self, reason, level="error"):
        """Tell Pacemaker why the action failed (shown by pcs status / crm_mon).

        level is the log level of the same line: "warning" for a result that is
        degraded rather than failed (OCF_DEGRADED*), where an error would mislead.
        """
        prefix = os.environ.get("OCF_EXIT_REASON_PREFIX", "ocf-exit-reason:")
        line = bounded(reason)
        try:
            sys.stderr.write(f"{prefix}{line}\n")
            sys.stderr.flush()
        except OSError:
            pass
        getattr(self.log, level)(line)

    def trace(self, message):
        self.log.trace(message)

    # -- commands ----------------------------------------------------------
    def run(self, argv, timeout=None, stdin=None, quiet=False, missing_ok=False, env=None):
        """Run argv (a list; never a shell string) and return a Completed.

        timeout defaults to, and is never more than, what is left of the
        action's own timeout (less a second of margin): a hanging tool must not
        outlive the action. A command that is not installed raises
        OCFError(ERR_INSTALLED) unless missing_ok. A timed-out command is
        killed with its whole process group and reports rc None.
        """
        return self.begin(argv, timeout, stdin, quiet, missing_ok, env).result()

    def begin(self, argv, timeout=None, stdin=None, quiet=False, missing_ok=False, env=None):
        """run() started now and finished by the returned Pending's result() (which
        returns or raises what run() would): a command whose answer is needed only later
        runs while the agent goes on. The timeout counts from here."""
        left = max(0.5, self.time_left() - 1.0)
        timeout = left if timeout is None else min(timeout, left)
        return Pending(self, start_command(argv, stdin=stdin, env=env), timeout, quiet,
                       missing_ok)

    # -- state, locks, attributes -------------------------------------------
    def state_path(self, name):
        """A path in the agent's private state directory (cleared at reboot).

        The directory is the agent's own, so a directory or a symlink found
        where a state file belongs is debris: it is removed (a symlink's target
        is never touched), or every write, lock and the stop that deletes the
        file would fail on it.
        """
        directory = os.path.join(self.state_dir, self.type)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        path = os.path.join(directory, name)
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return path
        if stat.S_ISLNK(mode):
            self.log.warning(f"removing the symlink {path} found where a state file belongs")
            os.unlink(path)
        elif stat.S_ISDIR(mode):
            import shutil
            self.log.warning(f"removing the directory {path} found where a state file belongs")
            shutil.rmtree(path, ignore_errors=True)
        return path

    def lock(self, path, timeout=None):
        """An exclusive fcntl lock on path, waited for up to timeout seconds."""
        return FileLock(path, self.time_left() - 1 if timeout is None else timeout)

    def node_attribute(self, name, value=None, delete=False, lifetime="reboot", node=None):
        """Set, delete or (value None) read a node attribute with crm_attribute (None when
        not set; AttributeUnreadable when crm_attribute cannot answer)."""
        return self._crm_attribute(["--lifetime", lifetime], name,
                                   ["--node", node or self.node_name], value, delete).result()

    def cluster_attribute(self, name, value=None, delete=False):
        """Set, delete or (value None) read a cluster-wide crm_config attribute.

        Reading an attribute that is not set returns None; one that cannot be read
        raises AttributeUnreadable.
        """
        return self.begin_cluster_attribute(name, value, delete).result()

    def begin_cluster_attribute(self, name, value=None, delete=False):
        """cluster_attribute() started now: its answer (or exception) comes from the
        returned object's result(), so crm_attribute's round trip to the CIB can overlap
        the agent's own work."""
        return self._crm_attribute(["--type", "crm_config"], name, [], value, delete)

    def _crm_attribute(self, scope, name, target, value, delete):
        argv = ["crm_attribute", "--quiet", *scope, "--name", name, *target]
        if delete:
            argv.append("--delete")
        elif value is not None:
            argv += ["--update", str(value)]
        else:
            argv.append("--query")
        query = value is None and not delete
        return AttributePending(self.begin(argv, timeout=min(max(self.time_left() - 1, 1), 30),
                                           quiet=query), name, query)

    def set_promotion_score(self, score):
        """Promotion score for this clone instance on this node (None deletes it)."""
        name = "master-" + self.instance_without_clone_suffix
        if score is None:
            return self.node_attribute(name, delete=True)
        return self.node_attribute(name, value=int(score))

    def close(self):
        self.log.close()


class AttributePending:
    """A crm_attribute call started by Resource._crm_attribute; result() is the attribute's
    value (a query: None when not set, AttributeUnreadable when there is no answer) or
    whether the change was made."""

    def __init__(self, pending, name, query):
        self.pending, self.name, self.query = pending, name, query

    def result(self):
        result = self.pending.result()
        if self.query:
            if result.rc == 0:
                return result.out.strip()
            if result.rc in ATTRIBUTE_NOT_SET and not result.timed_out:
                return None
            what = "timed out" if result.timed_out else f"exited {result.rc}"
            detail = " ".join(result.err.split())[:200]
            raise AttributeUnreadable(ERR_GENERIC, f"crm_attribute --query {self.name}: {what}"
                                                   f"{': ' + detail if detail else ''}")
        return result.rc == 0


class Pending:
    """A command Resource.begin() started; result() waits for it (once)."""

    def __init__(self, res, command, timeout, quiet, missing_ok):
        self.res, self.command, self.timeout = res, command, timeout
        self.quiet, self.missing_ok = quiet, missing_ok
        self.completed = None

    def result(self):
        if self.completed is None:
            self.completed = self._collect()
        return self.completed

    def _collect(self):
        argv, log = self.command.argv, self.res.log
        result = self.command.wait(self.timeout)
        log.trace(f"run {argv!r} -> rc={result.rc} in {result.duration * 1000:.1f} ms")
        if result.missing:
            if self.missing_ok:
                return result
            raise OCFError(ERR_INSTALLED, f"{argv[0]} is not installed (not found on PATH)")
        if result.rc != 0 and not self.quiet:
            what = "timed out" if result.timed_out else f"exited {result.rc}"
            log.warning(f"{' '.join(argv)} {what}: {result.err.strip() or result.out.strip()}")
        return result


class Completed:
    def __init__(self, argv, rc, out, err, duration, timed_out=False, missing=False):
        self.argv = argv
        self.rc = rc
        self.out = out
        self.err = err
        self.duration = duration
        self.timed_out = timed_out
        self.missing = missing

    def __repr__(self):
        return f"Completed({self.argv!r}, rc={self.rc})"


def run_command(argv, timeout=30.0, stdin=None, env=None):
    """posix_spawn argv with captured output, bounded by timeout (seconds)."""
    return start_command(argv, stdin=stdin, env=env).wait(timeout)


def start_command(argv, stdin=None, env=None):
    """argv spawned now, as a StartedCommand; every command an agent runs starts here (tests
    replace it to see, or refuse, what an agent would run)."""
    return StartedCommand(argv, stdin=stdin, env=env)


class StartedCommand:
    """argv spawned now (posix_spawn, its own process group, output captured); wait()
    collects it as a Completed. Lets an agent overlap a command whose answer it needs only
    later with its own work."""

    def __init__(self, argv, stdin=None, env=None):
        if not argv or not all(isinstance(a, str) for a in argv):
            raise TypeError("argv must be a non-empty list of strings")
        self.argv = argv
        self.started = time.monotonic()
        self.pid = None
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault("LC_ALL", "C")
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        in_r, in_w = os.pipe()
        actions = [(os.POSIX_SPAWN_DUP2, in_r, 0), (os.POSIX_SPAWN_DUP2, out_w, 1),
                   (os.POSIX_SPAWN_DUP2, err_w, 2)]
        for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
        try:
            self.pid = os.posix_spawnp(argv[0], argv, child_env, file_actions=actions,
                                       setpgroup=0)
        except FileNotFoundError:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                os.close(fd)
            return
        os.close(in_r)
        os.close(out_w)
        os.close(err_w)
        if stdin:
            try:
                os.write(in_w, stdin.encode() if isinstance(stdin, str) else stdin)
            except OSError:
                pass
        os.close(in_w)
        self.out_r, self.err_r = out_r, err_r

    def wait(self, timeout):
        """The Completed, waiting at most until timeout seconds after the spawn (then the
        whole process group is killed)."""
        import select
        argv, started = self.argv, self.started
        if self.pid is None:
            return Completed(argv, 127, "", f"{argv[0]}: not found", 0.0, missing=True)
        pid, out_r, err_r = self.pid, self.out_r, self.err_r
        chunks = {out_r: [], err_r: []}
        poller = select.poll()
        for fd in chunks:
            poller.register(fd, select.POLLIN | select.POLLHUP)
        open_fds = set(chunks)
        timed_out = False
        while open_fds:
            left = started + timeout - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for fd, _event in poller.poll(left * 1000):
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    open_fds.discard(fd)
        if timed_out:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
        status = _wait_child(pid, max(time.monotonic(), started + timeout) +
                             (5 if not timed_out else 2))
        for fd in chunks:
            os.close(fd)
        if status is None:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
            status = _wait_child(pid, time.monotonic() + 2)
            timed_out = True
        rc = None if timed_out else os.waitstatus_to_exitcode(status)
        if rc is not None and rc < 0:
            rc = 128 - rc  # killed by a signal: the shell's convention
        err = b"".join(chunks[err_r]).decode(errors="replace")
        if timed_out:  # agents quote err in their exit reasons: say why there is no answer
            err += f"{argv[0]}: timed out after {timeout:.1f} s (killed)\n"
        return Completed(argv, rc, b"".join(chunks[out_r]).decode(errors="replace"), err,
                         time.monotonic() - started, timed_out=timed_out)


def spawn_detached(module, args):
    """Run ocf_agents.<module>.main(args) in a process of its own and return its pid at once:
    its own session, stdio on /dev/null (Pacemaker waits for the agent's output pipes, never
    for this), an isolated interpreter importing this checkout's package."""
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            f"from ocf_agents.{module} import main; sys.exit(main(sys.argv[2:]))")
    actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",     # and where Log writes (see Log)
           **{k: v for k, v in os.environ.items()
              if k in ("HA_LOGFILE", "HA_DEBUGLOG", "HA_LOGFACILITY", "HA_debug")}}
    return os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", "-c", code,
                                           package_parent, *map(str, args)],
                          env, file_actions=actions, setsid=True)


def stop_own_process(pid, marker, sig, timeout=2.0):
    """Send sig to pid only if its command line carries marker (a pid reused by something
    else is left alone), then wait up to timeout until it is gone (a zombie is gone: its
    parent reaps it; reaped here when it is this process's child). False when there was
    nothing of ours to stop."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            if marker.encode() not in f.read():
                return False
        os.kill(pid, sig)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                break
        except ChildProcessError:
            pass
        stat_line = read_file(f"/proc/{pid}/stat", "") or ""
        if stat_line.rsplit(")", 1)[-1].split()[:1] in ([], ["Z"]):
            break
        time.sleep(0.01)
    return True


def _wait_child(pid, deadline):
    # Output closed: the child is (nearly always) exiting now, so look again soon.
    pause = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(pause)
        pause = min(pause * 2, 0.01)


def _ensure_path():
    parts = os.environ.get("PATH", "").split(":")
    missing = [d for d in _SYSTEM_PATH if d not in parts]
    if missing:
        os.environ["PATH"] = ":".join([p for p in parts if p] + missing)


def _int_env(name, default):
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class FileLock:
    """Context manager: an exclusive fcntl lock that gives up after timeout."""

    def __init__(self, path, timeout):
        self.path = path
        self.timeout = max(timeout, 0)
        self.fd = None

    def __enter__(self):
        import fcntl
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                              0o600)
        except OSError as err:
            what = "is a symlink (not followed)" if err.errno == 40 else err.strerror
            raise OCFError(ERR_GENERIC, f"cannot open the lock file {self.path}: {what}") \
                from None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise OCFError(ERR_GENERIC, f"timed out waiting for the lock {self.path}") from None
                time.sleep(0.05)

    def __exit__(self, *exc):
        os.close(self.fd)  # closing releases the lock
        self.fd = None


def write_file_atomically(path, data, mode=0o644):
    """Replace path with data: a new file beside it, fsynced, then renamed over.

    The rename replaces a symlink planted at path rather than following it,
    and O_EXCL keeps the temporary name from being a planted file either.
    """
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    for attempt in range(100):
        tmp = os.path.join(directory, f".{base}.{os.getpid()}.{attempt}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         mode)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(f"cannot create a temporary file beside {path}")
    try:
        os.fchmod(fd, mode)
        view = memoryview(data.encode() if isinstance(data, str) else data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.close(fd)
        fd = None
        os.rename(tmp, path)
    except BaseException:
        if fd is not None:
            os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


READ_LIMIT = 64 << 20


def read_head(path, limit=65536):
    """The start of a file such as /proc/drbd or a sysctl; "" when it cannot be read.
    One bounded, non-blocking read: the path may be a parameter (it could name /dev/zero
    or a FIFO), and /proc/sys files allocate a kernel buffer the size of the read (a
    large read fails with ENOMEM)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return ""
    try:
        return os.read(fd, limit).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def read_file(path, default=None):
    """Text of path without following a symlink at the last component; default
    when there is no such file (missing, a directory, a symlink, a name too long)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return default
    except OSError as err:
        if err.errno in (36, 40):  # ENAMETOOLONG; ELOOP: a symlink where a file belongs
            return default
        raise
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return default  # a device or FIFO where a file belongs
            data = f.read(READ_LIMIT + 1)
    except IsADirectoryError:
        return default
    if len(data) > READ_LIMIT:
        raise OSError(f"{path} is larger than {READ_LIMIT} bytes")
    return data.decode(errors="replace")


# --- logging ------------------------------------------------------------------
class Log:
    """Logging the resource-agents way.

    HA_LOGFILE gets info and above, HA_DEBUGLOG everything, HA_LOGFACILITY
    sends to syslog (silently nothing when /dev/log is missing), HA_debug
    (any value but 0/empty) enables debug lines. Lines go to stderr when
    stderr is a terminal or when no log destination is configured at all, so
    Pacemaker (which records an agent's stderr) and crm_resource -V show them.
    OCF_TRACE_RA=1 (or the trace_ra parameter) also writes a trace file.
    """

    LEVELS = {"debug": 7, "info": 6, "notice": 5, "warning": 4, "error": 3, "crit": 2}

    def __init__(self, agent_name, instance, action):
        env = os.environ
        self.tag = f"{agent_name}({instance})[{os.getpid()}]"
        self.action = action
        self.logfile = env.get("HA_LOGFILE") or None
        self.debuglog = env.get("HA_DEBUGLOG") or None
        self.facility = env.get("HA_LOGFACILITY") or None
        if self.facility in ("none",):
            self.facility = None
        self.debug_enabled = env.get("HA_debug", "0") not in ("", "0")
        self.to_stderr = _isatty(2) or not (self.logfile or self.facility or self.debuglog)
        self._syslog = None
        self.trace_file = None
        if is_true(env.get("OCF_TRACE_RA", "")) or is_true(env.get("OCF_RESKEY_trace_ra", "")):
            self._open_trace(agent_name, instance, action)

    def _open_trace(self, agent_name, instance, action):
        env = os.environ
        path = env.get("OCF_TRACE_FILE")
        if not path:
            base = env.get("OCF_RESKEY_trace_dir") or os.path.join(
                env.get("HA_VARLIB", "/var/lib/heartbeat"), "trace_ra",
                env.get("OCF_RESOURCE_TYPE") or agent_name)
            stamp = time.strftime("%Y-%m-%d.%H:%M:%S")
            path = os.path.join(base, f"{instance.replace('/', '_')}.{action}.{stamp}")
        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            self.trace_file = open(path, "a")
        except OSError:
            return
        self.trace(f"action {action} of {instance}; environment:")
        for key in sorted(env):
            if key.startswith(("OCF_", "HA_", "__OCF")):
                self.trace(f"  {key}={env[key]}")

    def _emit(self, level, message):
        line = f"{level.upper()}: {message}"
        stamp = time.strftime("%b %d %T")
        if self.trace_file:
            self.trace(line)
        if level == "debug" and not self.debug_enabled:
            return
        for path in {self.debuglog, self.logfile if level != "debug" else None} - {None}:
            _append(path, f"{self.tag}:\t{stamp} {line}\n")
        if self.facility:
            self._send_syslog(level, line)
        if self.to_stderr:
            try:
                sys.stderr.write(f"{stamp} {self.tag} {line}\n")
            except OSError:
                pass

    def _send_syslog(self, level, line):
        import syslog
        if self._syslog is None:
            facility = getattr(syslog, "LOG_" + self.facility.upper(), syslog.LOG_DAEMON)
            syslog.openlog(self.tag, syslog.LOG_PID, facility)
            self._syslog = syslog
        self._syslog.syslog(self.LEVELS[level], line)

    def debug(self, message):
        self._emit("debug", message)

    def info(self, message):
        self._emit("info", message)

    def notice(self, message):
        self._emit("notice", message)

    def warning(self, message):
        self._emit("warning", message)

    warn = warning

    def error(self, message):
        self._emit("error", message)

    def crit(self, message):
        self._emit("crit", message)

    def trace(self, message):
        if self.trace_file:
            # milliseconds: a trace is read to find where an action's time went
            now = time.time()
            self.trace_file.write(f"+ {time.strftime('%T', time.localtime(now))}"
                                  f".{int(now * 1000) % 1000:03d} {message}\n")

    def debug_traceback(self):
        import traceback
        text = traceback.format_exc()
        self.trace(text)
        for line in text.rstrip().splitlines():
            self._emit("debug", line)

    def close(self):
        if self.trace_file:
            self.trace_file.close()
            self.trace_file = None


def _append(path, text):
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError:
        pass


def _isatty(fd):
    try:
        return os.isatty(fd)
    except OSError:
        return False
