"""ocf:pyha:nfsnotify - NSM reboot notification (sm-notify) after failover.

NFSv3 clients hold locks through the NSM protocol: after the service moves,
the new server must tell every client that had locks "I rebooted" so they
reclaim them, under the floating address(es) the clients know. rpc.statd
keeps the clients in <statd dir>/sm; this agent runs sm-notify once per
source address. Because sm-notify consumes the records it notified, the
agent snapshots the statd directory first (<statd dir>/nfsnotify.bu.<id>) and
notifies each further address, and any later re-notification, from copies.
Instances share the statd directory: the latest snapshot any of them took
(<statd dir>/nfsnotify.bu) serves an instance that starts after another one
consumed the records.

With ocf:pyha:nfsserver, the statd directory (/var/lib/nfs) is the shared state of
the node that failed, so its clients are the ones notified. Start follows each
sm-notify run (it deletes a client's record once the client acknowledged) and
reports who was reached, says when nobody held locks, and fails only when
sm-notify gave up without reaching anyone; it logs an error when lockd's grace
period is already over, since the clients' reclaims will then be refused.

Monitor checks that the rpc.statd we notified for is still the one running:
a restarted statd lost its view of the clients, so monitor fails and the
restart notifies again.
"""

import os
import time

from ocf_agents.nfsd import net_namespace, pids_named, process_name, safe_name, stop_processes
from ocf_agents.ocf import (
    ERR_CONFIGURED, ERR_GENERIC, ERR_INSTALLED, NOT_RUNNING, SUCCESS,
    Action, Agent, OCFError, Parameter, have_binary, read_file, read_head, shown,
    write_file_atomically,
)

STATD_DIR_CANDIDATES = ("/var/lib/nfs/statd", "/var/lib/nfs")
BACKUP_NAME = "nfsnotify.bu"

# sm-notify options a user may add: exactly what sm-notify accepts, less the agent's own.
# nfs-utils 2.6.2's sm-notify parses "dm:np:v:P:f" (getopt; its usage line still shows a
# -q it no longer has: "sm-notify -q" fails with "invalid option -- 'q'"). -d (stay in the
# foreground) would make start wait for every client up to 15 minutes; -P and -v are the
# agent's.
_FLAG_OPTIONS = {"-f", "-n"}
_VALUE_OPTIONS = {"-m", "-p"}
_HOST_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:")


def parse_source_hosts(value):
    hosts = [h for h in value.replace(",", " ").split() if h]
    for host in hosts:
        if host.startswith("-") or not set(host) <= _HOST_ALLOWED:
            raise ValueError(f"{shown(host)} is not a host name or address")
        # A DNS name has at most 253 characters, 63 per label, and no empty label;
        # Python's resolver refuses others with a bare UnicodeError (issue 11).
        labels = host[:-1].split(".") if host.endswith(".") and ":" not in host \
            else host.split(".")
        if ":" not in host and (len(host) > 253 or any(not 0 < len(label) <= 63
                                                        for label in labels)):
            raise ValueError(f"{shown(host)} is not a host name: 253 characters at most, "
                             "labels 1-63")
        if ":" in host and len(host) > 45:  # the longest IPv6 text form
            raise ValueError(f"{shown(host)} is not an IPv6 address (too long)")
    return hosts


def parse_notify_args(value):
    words = value.split()
    args, i = [], 0
    while i < len(words):
        word = words[i]
        if word in _FLAG_OPTIONS:
            args.append(word)
        elif word in _VALUE_OPTIONS:
            if i + 1 >= len(words) or not words[i + 1].isdigit():
                raise ValueError(f"{word} needs a number")
            args += [word, words[i + 1]]
            i += 1
        elif word[:2] in _VALUE_OPTIONS and word[2:].isdigit():
            args.append(word)
        else:
            raise ValueError(f"{shown(word)} is not allowed: use only -f, -n, -m MINUTES and "
                             "-p PORT (what sm-notify accepts; -d, -P and -v are the agent's)")
        i += 1
    return args


def parse_notify_wait(value):
    if value > 3600:
        raise ValueError(f"{value:g} s is more than an hour: start would wait that long")
    return value


def parse_statd_dir(value):
    if value and (not value.startswith("/") or "/../" in value + "/"):
        raise ValueError(f"{shown(value)} is not an absolute path")
    if len(value.encode()) > 4095:  # PATH_MAX less the NUL: no such directory can exist
        raise ValueError(f"{shown(value)} is longer than a path can be (4095 bytes)")
    return value.rstrip("/") or None


# --- processes, without forking ----------------------------------------------------
def is_local_statd(pid):
    return process_name(pid) == "rpc.statd" and net_namespace(pid) == net_namespace("self")


def statd_pid():
    pids = pids_named("rpc.statd")
    return min(pids) if pids else None


def stop_sm_notify(state_dirs):
    """Stop sm-notify runs still retrying from state_dirs, so they cannot race
    a new run; other instances' runs are left alone."""
    stop_processes([pid for pid in pids_named("sm-notify") if sm_notify_dir(pid) in state_dirs])


def sm_notify_dir(pid):
    """The -P directory of a running sm-notify (its default when not given)."""
    args = (read_file(f"/proc/{pid}/cmdline", "") or "").split("\0")
    if not args[0]:
        return None  # a zombie: nothing left to stop
    for i, arg in enumerate(args[:-1]):
        if arg == "-P":
            return args[i + 1].rstrip("/")
    return STATD_DIR_CANDIDATES[-1]


# --- the statd directory ----------------------------------------------------------
def statd_dir(res):
    if res.params.statd_dir:
        return res.params.statd_dir
    for candidate in STATD_DIR_CANDIDATES:
        if os.path.isdir(os.path.join(candidate, "sm")):
            return candidate
    return STATD_DIR_CANDIDATES[-1]


def copy_statd_state(source, target):
    """Copy sm/, sm.bak/ and state with their owners: sm-notify runs as the
    owner of the directory it is given."""
    import shutil
    if os.path.lexists(target):
        shutil.rmtree(target) if os.path.isdir(target) and not os.path.islink(target) \
            else os.unlink(target)
    os.mkdir(target, 0o755)
    for name in ("sm", "sm.bak"):
        src = os.path.join(source, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(target, name), symlinks=True)
        else:
            os.mkdir(os.path.join(target, name), 0o755)
    if os.path.isfile(os.path.join(source, "state")):
        shutil.copy2(os.path.join(source, "state"), os.path.join(target, "state"))
    owner = os.stat(os.path.join(source, "sm")) if os.path.isdir(os.path.join(source, "sm")) \
        else os.stat(source)
    for root, dirs, files in os.walk(target):
        for name in [""] + dirs + files:
            os.lchown(os.path.join(root, name), owner.st_uid, owner.st_gid)


def is_real_dir(path):
    """A directory, not a symlink to one: snapshots are never read through a planted link."""
    return os.path.isdir(path) and not os.path.islink(path)


def copy_state_number(source, target):
    import shutil
    if os.path.isfile(os.path.join(source, "state")):
        shutil.copy2(os.path.join(source, "state"), os.path.join(target, "state"))
        owner = os.stat(target)
        os.lchown(os.path.join(target, "state"), owner.st_uid, owner.st_gid)


# --- actions ----------------------------------------------------------------------
def check_environment(res):
    if res.action == "monitor":
        return
    for tool in ("sm-notify",):
        if not have_binary(tool):
            raise OCFError(ERR_INSTALLED, f"{tool} is not installed (package nfs-common)")
    directory = statd_dir(res)
    if not os.path.isdir(directory):
        raise OCFError(ERR_CONFIGURED, f"statd directory {directory} does not exist")


def pid_file(res):
    return res.state_path(f"{res.instance}.statd-pid")


def recorded_statd_pid(res):
    text = (read_file(pid_file(res), "") or "").strip()
    return int(text) if text.isdigit() else None


def monitor(res):
    recorded = recorded_statd_pid(res)
    if recorded is None:
        return NOT_RUNNING
    if is_local_statd(recorded):
        return SUCCESS
    current = statd_pid()
    if current is None:
        raise OCFError(ERR_GENERIC, "rpc.statd is not running: NFSv3 clients cannot reclaim "
                                    "locks; start rpc.statd (the NFS server resource)")
    raise OCFError(ERR_GENERIC, f"rpc.statd was restarted (pid {recorded} is gone, now "
                                f"{current}): clients must be notified again")


def start(res):
    if monitor_quietly(res) == SUCCESS:
        return SUCCESS
    pid = statd_pid()
    if pid is None:
        raise OCFError(ERR_GENERIC, "rpc.statd is not running: start rpc.statd (the NFS "
                                    "server resource) before nfsnotify")
    for host in res.params.source_host:
        check_resolvable(host)
    directory = statd_dir(res)
    hosts = res.params.source_host or [None]
    backup = backup_dir(res, directory)
    # Instances share the statd directory: one notification run at a time.
    with res.lock(res.state_path("statd-dir.lock")):
        stop_sm_notify([directory] + [copy_dir(res, directory, i) for i in range(len(hosts))])
        # sm-notify consumes the records it notified: when sm/ is empty (we,
        # another instance or statd notified since), a snapshot still knows the
        # clients: this instance's, else the latest one any instance took.
        fresh = bool(os.listdir(os.path.join(directory, "sm")))
        latest = os.path.join(directory, BACKUP_NAME)
        if fresh:
            copy_statd_state(directory, latest)
        if fresh or not is_real_dir(backup):
            copy_statd_state(latest if not fresh and is_real_dir(latest) else directory, backup)
        for index, host in enumerate(hosts):
            if index == 0 and fresh:
                state_dir = directory
            else:
                state_dir = copy_dir(res, directory, index)
                copy_statd_state(backup, state_dir)
                # The NSM state number must move forward with every reboot
                # notification: start from the live one, not the snapshot's.
                copy_state_number(directory, state_dir)
            notify(res, host, state_dir)
    write_file_atomically(pid_file(res), f"{pid}\n")
    return SUCCESS


def notify(res, host, state_dir):
    """Run sm-notify from state_dir and follow it: it removes each client's record from
    sm.bak/ once the client acknowledged, so what is left there was not reached."""
    clients = set(records(state_dir, "sm")) | set(records(state_dir, "sm.bak"))
    as_host = f" as {host}" if host else ""
    if not clients:
        # Nothing to send; sm-notify still runs, as it ends lockd's grace period early
        # when no client can reclaim (nfs-utils' nsm_lift_grace_period).
        res.log.notice(f"no NFSv3 client held locks on this server: nobody to notify{as_host}")
    argv = ["sm-notify", "-f"] + res.params.notify_args
    if host:
        argv += ["-v", host]
    argv += ["-P", state_dir]
    result = res.run(argv)
    if result.rc != 0:
        raise OCFError(ERR_GENERIC, f"sm-notify{' for ' + host if host else ''} failed: "
                                    f"{(result.err or result.out).strip() or result.rc}")
    if not clients:
        return
    check_grace_left(res)
    deadline = time.monotonic() + min(res.params.notify_wait, max(0.0, res.time_left() - 3))
    while True:
        # Whether it still runs first, then what is left: a run that ends in between has
        # already removed the records of the clients it reached.
        retrying = any(sm_notify_dir(pid) == state_dir for pid in pids_named("sm-notify"))
        left = set(records(state_dir, "sm.bak")) & clients
        if not left or not retrying or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    reached = sorted(clients - left)
    if left and not retrying and not reached:
        raise OCFError(ERR_GENERIC, f"sm-notify{as_host} reached none of the {len(clients)} "
                       f"NFSv3 clients ({names(left)}) and gave up: they cannot reclaim their "
                       "locks (see sm-notify in the system log)")
    if left:
        res.log.warning(f"not reached yet{as_host}: {names(left)}; "
                        + ("sm-notify keeps trying (15 minutes by default)" if retrying else
                           "sm-notify gave up on them"))
    res.log.info(f"sent reboot notifications{as_host} from {state_dir}: {len(reached)} of "
                 f"{len(clients)} clients acknowledged ({names(reached) or 'none yet'})")


def read_lock_grace():
    """(grace seconds, seconds since lockd started) of the kernel's lockd, or None.

    lockd starts its grace period when it starts (with nfsd); fs.nfs.nlm_grace_period
    (0: five times nlm_timeout) is its length."""
    pids = pids_named("lockd")
    grace = read_head("/proc/sys/fs/nfs/nlm_grace_period").strip()
    stat = read_head(f"/proc/{pids[0]}/stat") if pids else ""
    uptime = read_head("/proc/uptime").split()
    try:
        started = int(stat.rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        seconds = int(grace)
        if seconds == 0:
            seconds = 5 * int(read_head("/proc/sys/fs/nfs/nlm_timeout").strip())
        return seconds, float(uptime[0]) - started
    except (IndexError, ValueError, OSError):
        return None


def check_grace_left(res):
    """Clients reclaim when notified: the server must still be in its grace period, or
    the kernel refuses every reclaim ("spurious grace period reject" on the clients)."""
    grace = read_lock_grace()
    if grace is None:
        return
    length, elapsed = grace
    if elapsed > length:
        res.log.error(f"the NFS server's lock grace period ({length} s) ended "
                      f"{elapsed - length:.0f} s before this notification: the clients' lock "
                      f"reclaims will be refused and their locks lost. Make the grace period "
                      f"longer than {elapsed:.0f} s (ocf:pyha:nfsserver grace_time), or the "
                      "resources between the NFS server and this one faster")
    elif length - elapsed < 3:
        res.log.warning(f"only {length - elapsed:.1f} s of the NFS server's {length} s lock "
                        "grace period left for the clients' reclaims")


def records(state_dir, name):
    try:
        return [n for n in os.listdir(os.path.join(state_dir, name)) if not n.startswith(".")]
    except OSError:
        return []


def names(hosts, limit=5):
    hosts = sorted(hosts)
    shown_hosts = ", ".join(shown(h, 40) if len(h) > 40 else h for h in hosts[:limit])
    return shown_hosts + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def backup_dir(res, directory):
    return os.path.join(directory, f"{BACKUP_NAME}.{safe_name(res.instance)}")


def copy_dir(res, directory, index):
    return f"{backup_dir(res, directory)}.{index}"


def check_resolvable(host):
    """sm-notify needs a name for its -v address (a reverse lookup for an IP)
    and otherwise fails silently into syslog; say so plainly instead."""
    import socket
    try:
        infos = socket.getaddrinfo(host, None, flags=socket.AI_CANONNAME)
        if host.replace(".", "").isdigit() or ":" in host:
            socket.getnameinfo((host, 0), socket.NI_NAMEREQD)
    except UnicodeError:  # the resolver's answer to a name no DNS can hold
        raise OCFError(ERR_CONFIGURED, f"source_host {shown(host)} is not a valid host name; "
                                       "use a name or address clients know") from None
    except (OSError, IndexError) as err:
        raise OCFError(ERR_GENERIC, f"source_host {host} does not resolve ({err}); sm-notify "
                                    "needs a name for it: add it to /etc/hosts or DNS") from None
    return infos


def monitor_quietly(res):
    try:
        return monitor(res)
    except OCFError:
        return ERR_GENERIC


def stop(res):
    directory = statd_dir(res)
    hosts = res.params.source_host or [None]
    stop_sm_notify([directory] + [copy_dir(res, directory, i) for i in range(len(hosts))])
    try:
        os.unlink(pid_file(res))
    except FileNotFoundError:
        pass
    return SUCCESS


def validate_all(res):
    return SUCCESS


AGENT = Agent(
    name="nfsnotify",
    shortdesc="Sends NFSv3 reboot notifications (sm-notify) after failover",
    longdesc="""
Runs sm-notify when the NFS service starts on this node, so NFSv3 clients that
held locks reclaim them from the new server. Start it after the exports and the
floating address(es), since clients reclaim right away. With several source
hosts (floating addresses), each is notified from its own copy of the statd
state, because sm-notify consumes the records it notified.

Monitor fails when rpc.statd has been restarted since the notification (its
client list is lost), so Pacemaker restarts this resource and notifies again.
rpc.statd itself is the NFS server's job.
""",
    parameters=[
        Parameter("source_host", default="", check=parse_source_hosts,
                  shortdesc="Floating address(es) to notify from",
                  longdesc="Host names or addresses, separated by commas or spaces, that "
                           "clients know this NFS server by (the floating IPs). Each is sent "
                           "as the server's name (sm-notify -v). Empty: the node's own name."),
        Parameter("notify_args", default="", check=parse_notify_args,
                  shortdesc="Extra sm-notify options",
                  longdesc="Additional sm-notify options; allowed are -f, -n (do not "
                           "update the NSM state number), -m MINUTES (retry time) and -p PORT "
                           "(source port): what sm-notify accepts (nfs-utils 2.6.2 has no -q). "
                           "-f is always used."),
        Parameter("notify_wait", type="time", default="10", check=parse_notify_wait,
                  shortdesc="How long start follows sm-notify (seconds)",
                  longdesc="Start waits up to this long for every client to acknowledge its "
                           "notification, and reports who did; clients not reached by then "
                           "are left to sm-notify's own retries (logged as a warning). Start "
                           "fails when sm-notify gave up without reaching any client. 0: do "
                           "not wait."),
        Parameter("statd_dir", default="", check=parse_statd_dir,
                  shortdesc="rpc.statd state directory",
                  longdesc="Directory holding sm/, sm.bak/ and state. Empty: "
                           "/var/lib/nfs/statd when it has sm/, else /var/lib/nfs (Debian)."),
    ],
    actions=[
        Action("start", timeout=90, handler=start),
        Action("stop", timeout=90, handler=stop),
        Action("monitor", timeout=20, interval=30, depth=0, handler=monitor),
        Action("validate-all", timeout=20, handler=validate_all),
        Action("meta-data", timeout=5),
    ],
    validate=check_environment,
)


if __name__ == "__main__":
    AGENT.main()
