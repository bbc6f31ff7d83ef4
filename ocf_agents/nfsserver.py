"""ocf:pyha:nfsserver - the kernel NFS server, run by the cluster on the node with the disk.

Start, on the node that holds the shared filesystem:

1. the NFS server's state follows the service: ``shared_infodir`` (a directory on
   the shared disk) is bind-mounted over /var/lib/nfs before any daemon starts,
   so rpc.statd's records and state number, rmtab and NFSv4 client tracking are
   those of the node that failed - nothing is copied, nothing is lost;
2. nfsd runs in a UTS namespace whose host name is ``server_scope``: the same
   NFSv4 server scope on every node, which NFSv4.1+ clients require to reclaim;
3. nfsd starts with the configured grace and lease times (rpc.nfsd -G/-L, which
   also sets lockd's grace): a fresh lockd and nfsd are in grace when the clients,
   told by ocf:pyha:nfsnotify, reclaim their locks;
4. with systemd, through its own units (nfs-server.service pulls rpc.statd,
   rpc.mountd and nfsdcld), with a runtime drop-in for rpc.nfsd's command line
   and rpc-statd-notify masked for the node's runtime: notification is
   nfsnotify's job, after the exports and the floating address are up; without
   systemd, the same daemons are started directly.

Monitor (no fork): nfsd's threads, rpc.statd and rpc.mountd (and nfsdcld when it
ran at start), and the bind mount. At depth 20 it also makes RPC NULL calls to
nfsd and rpc.mountd on ``check_address`` (the floating address once it is up).
Stop stops nfsd and the daemons, flushes the kernel's export cache and unmounts
/var/lib/nfs, so nothing holds the shared filesystem; rpcbind is left running.
"""

import os
import time

from ocf_agents import nfsd
from ocf_agents.ocf import (
    ERR_GENERIC, ERR_INSTALLED, NOT_RUNNING, SUCCESS,
    Action, Agent, OCFError, Parameter, have_binary, read_file, shown, write_file_atomically,
)

NFS_SERVER_UNIT = "nfs-server.service"
NOTIFY_UNIT = "rpc-statd-notify.service"
SERVICE_UNITS = ("nfs-server.service", "nfs-mountd.service", "rpc-statd.service",
                 "nfsdcld.service")
DROP_IN = os.path.join(nfsd.SYSTEMD_RUNTIME, NFS_SERVER_UNIT + ".d", "50-pyha-nfsserver.conf")
NFSD_MAX_THREADS = 8192       # NFSD_MAXSERVS in the kernel
TIME_RANGE = (10, 3600)       # nfsd refuses a lease below 10 s; an hour is plenty
_SCOPE_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


# --- parameter checks -----------------------------------------------------------
def parse_shared_infodir(value):
    if not value:
        return None
    if not value.startswith("/") or "/../" in value + "/" or "/./" in value + "/":
        raise ValueError(f"{shown(value)} is not an absolute path")
    if not value.isprintable() or len(value.encode()) > 4000:
        raise ValueError(f"{shown(value)} is not a usable path (printable, 4000 bytes at most)")
    value = os.path.normpath(value)
    if value == "/" or value == nfsd.NFS_STATE_DIR or value.startswith(nfsd.NFS_STATE_DIR + "/"):
        raise ValueError(f"{shown(value)} cannot hold the state it would be mounted over: "
                         "use a directory on the shared filesystem")
    return value


def parse_server_scope(value):
    if value and (len(value) > 64 or not set(value) <= _SCOPE_ALLOWED):
        raise ValueError(f"{shown(value)} is not a host name (letters, digits, '.', '-', '_'; "
                         "64 characters at most)")
    return value


def parse_threads(value):
    if not 1 <= value <= NFSD_MAX_THREADS:
        raise ValueError(f"{value} is not between 1 and {NFSD_MAX_THREADS}")
    return value


def parse_nfsd_time(value):
    if not TIME_RANGE[0] <= value <= TIME_RANGE[1]:
        raise ValueError(f"{value:g} s is outside {TIME_RANGE[0]}-{TIME_RANGE[1]} s "
                         "(nfsd refuses less than 10 s)")
    return int(value)


def parse_service_manager(value):
    if value not in ("auto", "systemd", "direct"):
        raise ValueError(f"{shown(value)} is not auto, systemd or direct")
    return value


def parse_check_address(value):
    if not value:
        return None
    import ipaddress
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IP address") from None


# --- where things are -----------------------------------------------------------
def uses_systemd(res):
    manager = res.params.service_manager
    return nfsd.systemd_runs() if manager == "auto" else manager == "systemd"


def scope_name(res):
    return res.params.server_scope or res.instance_without_clone_suffix


def uts_file(res):
    return res.state_path(f"{nfsd.safe_name(res.instance_without_clone_suffix)}.uts")


def marker(res):
    return res.state_path(f"{nfsd.safe_name(res.instance)}.started")


def read_marker(res):
    """What start recorded: the daemons it left running (by name)."""
    text = read_file(marker(res), None)
    if text is None:
        return None
    return [w for w in text.split() if w in (nfsd.STATD, nfsd.MOUNTD, nfsd.CLD)]


def nfsd_argv(res):
    p = res.params
    return ["rpc.nfsd", "-G", str(p.grace_time), "-L", str(p.lease_time), str(p.threads)]


# --- actions ----------------------------------------------------------------------
def check_environment(res):
    if res.action == "monitor" or res.action == "stop":
        return   # report and stop what is there; refusing here would get the node fenced
    for tool, package in (("rpc.nfsd", "nfs-kernel-server"), ("rpc.mountd", "nfs-kernel-server"),
                          ("exportfs", "nfs-kernel-server"), ("rpc.statd", "nfs-common"),
                          ("nsenter", "util-linux"), ("unshare", "util-linux")):
        if not have_binary(tool):
            raise OCFError(ERR_INSTALLED, f"{tool} is not installed (package {package})")
    if not nfsd.kernel_has_nfsd():
        raise OCFError(ERR_INSTALLED, f"this node's kernel ({os.uname().release}) has no "
                                      "nfsd module: the kernel NFS server cannot run here")
    if res.params.service_manager == "systemd" and not nfsd.systemd_runs():
        raise OCFError(ERR_INSTALLED, "service_manager=systemd but systemd is not running "
                                      "on this node: use auto or direct")
    if res.params.lease_time > res.params.grace_time:
        res.log.warning(f"lease_time {res.params.lease_time} s is longer than grace_time "
                        f"{res.params.grace_time} s: NFSv4 clients may not all reclaim in time")


def monitor(res):
    expected = read_marker(res)
    if expected is None:
        # Our marker lives on tmpfs: after a reboot, whatever runs was not started by us.
        return NOT_RUNNING
    threads = nfsd.read_threads()
    running = set(nfsd.process_name(p) for p in nfsd.pids_named(*expected))
    missing = [name for name in expected if name not in running]
    shared = res.params.shared_infodir
    mounted = shared is not None and nfsd.same_directory(nfsd.NFS_STATE_DIR, shared)
    if not threads and len(missing) == len(expected) and not mounted:
        return NOT_RUNNING
    if not threads:
        raise OCFError(ERR_GENERIC, "nfsd is not running (0 threads): clients get no answer")
    if missing:
        raise OCFError(ERR_GENERIC, f"{' and '.join(missing)} not running: "
                       + ("clients cannot mount" if nfsd.MOUNTD in missing else
                          "NFSv3 locks cannot be recovered" if nfsd.STATD in missing else
                          "NFSv4 clients cannot reclaim after a failover"))
    if shared is not None and not mounted:
        raise OCFError(ERR_GENERIC, f"{nfsd.NFS_STATE_DIR} is not the shared {shared}: "
                       "lock and client state would be lost")
    if threads != res.params.threads:
        res.log.info(f"nfsd runs {threads} threads, configured {res.params.threads}")
    if res.check_level >= 20:
        check_rpc_answers(res)
    return SUCCESS


def check_rpc_answers(res):
    """NULL calls to nfsd and rpc.mountd, as a client would reach them."""
    from ocf_agents import sunrpc
    address = res.params.check_address
    if address and not is_local_address(address):
        res.log.debug(f"{address} is not on this node yet; checking on the loopback")
        address = None
    address = address or "127.0.0.1"
    timeout = max(1.0, min(5.0, res.time_left() / 3))
    # nfsd answers on 2049 whatever versions it serves (an NFSv4-only server answers
    # NFSv3 with "version mismatch": alive); rpc.mountd is found through rpcbind.
    for program, version, port in ((sunrpc.NFS, 3, 2049), (sunrpc.MOUNT, 3, None)):
        try:
            sunrpc.null_call(address, program, version, port=port, timeout=timeout,
                             any_version=program == sunrpc.NFS)
        except sunrpc.RPCError as err:
            raise OCFError(ERR_GENERIC, f"{sunrpc.NAMES[program]} does not answer on "
                                        f"{address}: {err}") from None


def is_local_address(address):
    import socket
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
        return True
    except OSError:
        return False


def start(res):
    with res.lock(res.state_path("nfsserver.lock")):
        if monitor_quietly(res) == SUCCESS:
            return SUCCESS
        # Whatever runs now was started without the shared state (at boot, by hand, or a
        # start that failed half-way): stop it, or rpc.statd would keep writing locally.
        if nfsd.read_threads() or nfsd.pids_named(nfsd.STATD, nfsd.MOUNTD, nfsd.CLD):
            stop_service(res)
        mount_shared_state(res)
        ensure_scope_namespace(res)
        try:
            if uses_systemd(res):
                start_with_systemd(res)
            else:
                start_directly(res)
            started = wait_until_serving(res)
        except OCFError:
            stop_service(res)
            unmount_shared_state(res)
            raise
        write_file_atomically(marker(res), " ".join(started) + "\n")
    res.log.info(f"NFS server started ({res.params.threads} threads, grace "
                 f"{res.params.grace_time} s, lease {res.params.lease_time} s, scope "
                 f"{scope_name(res)}"
                 + (f", state in {res.params.shared_infodir})" if res.params.shared_infodir
                    else ", state local)"))
    return SUCCESS


def monitor_quietly(res):
    try:
        return monitor(res)
    except OCFError:
        return ERR_GENERIC


def mount_shared_state(res):
    shared = res.params.shared_infodir
    if shared is None:
        res.log.warning("shared_infodir is not set: lock holders and rmtab stay on this node "
                        "and are lost with it")
        return
    parent = os.path.dirname(shared)
    if not os.path.isdir(parent):
        raise OCFError(ERR_GENERIC, f"{parent} does not exist: is the shared filesystem "
                                    "mounted (order the Filesystem resource before this one)?")
    if os.stat(parent).st_dev == os.stat(nfsd.ROOT).st_dev:
        # State kept on the node's own disk would be lost with the node, the very thing
        # this directory exists to prevent; most often the Filesystem is not mounted yet.
        raise OCFError(ERR_GENERIC, f"{shown(shared, 60)} is on this node's root filesystem, "
                                    "not the shared disk: is the shared filesystem mounted "
                                    "(order the Filesystem resource before this one)?")
    if not os.path.isdir(shared):
        os.mkdir(shared, 0o755)
        res.log.info(f"created {shared} for the NFS server's state")
    nfsd.prepare_state_dir(shared, nfsd.statd_owner())
    if nfsd.same_directory(nfsd.NFS_STATE_DIR, shared):
        return
    if nfsd.is_mount_point(nfsd.NFS_STATE_DIR):
        raise OCFError(ERR_GENERIC, f"{nfsd.NFS_STATE_DIR} is already a mount point of "
                       f"something else than {shared}: unmount it")
    # rpc_pipefs lives in /run on Debian; where a distribution keeps it under
    # /var/lib/nfs, a plain bind mount would hide it from the daemons.
    pipefs = nfsd.mounts_below(nfsd.NFS_STATE_DIR)
    result = res.run(["mount", "--rbind" if pipefs else "--bind", shared, nfsd.NFS_STATE_DIR])
    if result.rc != 0:
        raise OCFError(ERR_GENERIC, f"cannot bind-mount {shared} over {nfsd.NFS_STATE_DIR}: "
                                    f"{result.err.strip() or result.rc}")


def unmount_shared_state(res):
    shared = res.params.shared_infodir
    if shared is None or not nfsd.is_mount_point(nfsd.NFS_STATE_DIR):
        return
    if not nfsd.same_directory(nfsd.NFS_STATE_DIR, shared) and os.path.isdir(shared):
        return   # someone else's mount: not ours to remove
    # sm-notify runs left by nfsnotify work in the state directory; they would hold it.
    notifiers = [pid for pid in nfsd.pids_named(nfsd.SM_NOTIFY)
                 if (nfsd.process_cwd(pid) or "").startswith(nfsd.NFS_STATE_DIR)]
    nfsd.stop_processes(notifiers, wait=2)
    deadline = time.monotonic() + min(10.0, max(1.0, res.time_left() - 3))
    while True:
        result = res.run(["umount", "-R", nfsd.NFS_STATE_DIR], quiet=True)
        if result.rc == 0 or not nfsd.is_mount_point(nfsd.NFS_STATE_DIR):
            return
        if time.monotonic() >= deadline:
            holders = nfsd.holders_of(nfsd.NFS_STATE_DIR)
            raise OCFError(ERR_GENERIC, f"cannot unmount {nfsd.NFS_STATE_DIR}: "
                           + (", ".join(f"{name} (pid {pid})" for pid, name in holders[:5])
                              + " still use it" if holders else result.err.strip()))
        time.sleep(0.3)


def ensure_scope_namespace(res):
    """A UTS namespace named after the scope, kept in a file nsenter can enter."""
    path, scope = uts_file(res), scope_name(res)
    recorded = read_file(path + ".name", "").strip()
    if recorded == scope and os.path.ismount(path):
        return
    if os.path.ismount(path):
        res.run(["umount", path], quiet=True)
    with open(path, "a"):
        pass
    result = res.run(["unshare", f"--uts={path}", "hostname", scope])
    if result.rc != 0:
        raise OCFError(ERR_GENERIC, f"cannot create the UTS namespace for server scope "
                                    f"{scope}: {result.err.strip() or result.rc}")
    write_file_atomically(path + ".name", scope + "\n")


def start_with_systemd(res):
    argv = ["/usr/bin/nsenter", f"--uts={uts_file(res)}", have_path("rpc.nfsd")] + nfsd_argv(res)[1:]
    drop_in = ("# Written by ocf:pyha:nfsserver: the cluster runs nfsd with its scope,\n"
               "# grace and lease. Runtime only: gone at reboot.\n"
               "[Service]\nExecStart=\nExecStart=" + " ".join(argv) + "\n")
    changed = nfsd.write_if_changed(DROP_IN, drop_in)
    # rpc-statd-notify would notify from the node's name before the exports and the
    # floating address exist, consuming the records nfsnotify needs.
    changed = nfsd.mask_at_runtime(NOTIFY_UNIT) or changed
    if changed:
        systemctl(res, "daemon-reload")
    try:
        systemctl(res, "start", NFS_SERVER_UNIT)
    except OCFError:
        if changed:
            raise
        # Someone changed the units on disk since the last reload (systemd then
        # cancels the job): reload once and try again.
        systemctl(res, "daemon-reload")
        systemctl(res, "start", NFS_SERVER_UNIT)


def have_path(tool):
    for directory in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        if os.access(os.path.join(directory, tool), os.X_OK):
            return os.path.join(directory, tool)
    return tool


def systemctl(res, *args):
    result = res.run(["systemctl", *args])
    if result.rc is None:
        # Killed at the action's deadline: say so, not "timed out after <the rest>".
        raise OCFError(ERR_GENERIC, f"systemctl {' '.join(args)} did not finish within the "
                       f"{res.action}'s timeout ({res.timeout:.0f} s): raise that operation's "
                       "timeout, or see the unit's log (journalctl -u nfs-server)")
    if result.rc != 0:
        lines = (result.err or result.out).strip().splitlines()
        raise OCFError(ERR_GENERIC, f"systemctl {' '.join(args)} failed: "
                                    f"{lines[0] if lines else result.rc}")


def start_directly(res):
    """The daemons in the order the units start them: rpcbind, rpc.statd, nfsdcld,
    rpc.mountd, then nfsd."""
    if nfsd.read_threads() is None:
        res.run(["modprobe", "nfsd"], quiet=True)
        if not os.path.exists(nfsd.THREADS):
            run_checked(res, ["mount", "-t", "nfsd", "nfsd", nfsd.NFSD_FS])
    if not nfsd.pids_named(nfsd.RPCBIND):
        run_checked(res, ["rpcbind", "-w"])
    if not nfsd.pids_named(nfsd.STATD):
        run_checked(res, ["rpc.statd", "--no-notify"])
    if have_binary("nfsdcld") and os.path.isdir("/run/rpc_pipefs/nfsd") \
            and not nfsd.pids_named(nfsd.CLD):
        run_checked(res, ["nfsdcld"])
    if not nfsd.pids_named(nfsd.MOUNTD):
        run_checked(res, ["rpc.mountd"])
    run_checked(res, ["nsenter", f"--uts={uts_file(res)}"] + nfsd_argv(res))


def run_checked(res, argv):
    result = res.run(argv)
    if result.rc != 0:
        lines = (result.err or result.out).strip().splitlines()
        raise OCFError(ERR_GENERIC, f"{argv[0]} failed: {lines[-1] if lines else result.rc}")


def wait_until_serving(res):
    """The daemons that run once nfsd has threads (rpc.statd may lag its unit)."""
    deadline = time.monotonic() + min(10.0, max(1.0, res.time_left() - 5))
    while True:
        threads = nfsd.read_threads()
        running = set(nfsd.process_name(p)
                      for p in nfsd.pids_named(nfsd.STATD, nfsd.MOUNTD, nfsd.CLD))
        if threads and {nfsd.STATD, nfsd.MOUNTD} <= running:
            return sorted(running)
        if time.monotonic() >= deadline:
            lacking = [n for n in (nfsd.STATD, nfsd.MOUNTD) if n not in running]
            raise OCFError(ERR_GENERIC, "the NFS server did not come up: "
                           + ("nfsd has no threads" if not threads else
                              f"{' and '.join(lacking)} not running"))
        time.sleep(0.1)


def stop_service(res):
    """nfsd and its daemons stopped, the kernel's export cache flushed; rpcbind stays."""
    if uses_systemd(res):
        result = res.run(["systemctl", "stop", *SERVICE_UNITS])
        if result.rc != 0:
            res.log.warning(f"systemctl stop: {result.err.strip()}")
    if nfsd.read_threads():
        res.run(["rpc.nfsd", "0"])
    nfsd.stop_processes(nfsd.pids_named(nfsd.MOUNTD, nfsd.STATD, nfsd.CLD),
                        wait=min(5.0, max(0.5, res.time_left() / 4)))
    if nfsd.read_threads() is not None:
        res.run(["exportfs", "-f"], quiet=True, missing_ok=True)
    if nfsd.read_threads():
        raise OCFError(ERR_GENERIC, "nfsd still has threads after rpc.nfsd 0")


def stop(res):
    with res.lock(res.state_path("nfsserver.lock")):
        stop_service(res)
        unmount_shared_state(res)
        try:
            os.unlink(marker(res))
        except FileNotFoundError:
            pass
    return SUCCESS


def validate_all(res):
    return SUCCESS


AGENT = Agent(
    name="nfsserver",
    shortdesc="The kernel NFS server, with its lock and client state on the shared disk",
    longdesc="""
Runs the kernel NFS server (nfsd, rpc.mountd, rpc.statd, nfsdcld) on the node
that holds the shared filesystem, with systemd's units where systemd runs and
directly where it does not. The state that must follow the service - rpc.statd's
records of the NFSv3 clients that hold locks, its state number, rmtab and the
NFSv4 client tracking database - lives in shared_infodir on the shared disk,
bind-mounted over /var/lib/nfs while the server runs. nfsd starts in grace
(grace_time) so clients reclaim their locks, with the same NFSv4 server scope
on every node (server_scope) so NFSv4.1+ clients can reclaim too.

Put it after the Filesystem and before ocf:pyha:nfsexport, the floating IP and
ocf:pyha:nfsnotify, which tells the clients to reclaim. Do not enable
nfs-server.service at boot: the cluster starts it.
""",
    parameters=[
        Parameter("shared_infodir", default="", check=parse_shared_infodir,
                  shortdesc="NFS server state directory on the shared disk",
                  longdesc="A directory on the shared filesystem (created if missing) that "
                           "is mounted over /var/lib/nfs while the server runs: rpc.statd's "
                           "records, rmtab, NFSv4 client tracking. Empty: the state stays on "
                           "the node, and a crash loses who held locks."),
        Parameter("server_scope", default="", check=parse_server_scope,
                  shortdesc="NFSv4 server scope (the same on every node)",
                  longdesc="The name nfsd gives NFSv4.1+ clients as its scope; clients reclaim "
                           "state only from a server with the same scope. Empty: the "
                           "resource's name."),
        Parameter("grace_time", type="time", default="90", check=parse_nfsd_time,
                  shortdesc="Grace period after start (seconds)",
                  longdesc="How long nfsd and lockd accept only lock reclaims after start "
                           "(10-3600 s). Shorter is a faster failover for new locks and NFSv4 "
                           "opens; it must cover the time from this start until the clients "
                           "have been notified and reclaimed."),
        Parameter("lease_time", type="time", default="90", check=parse_nfsd_time,
                  shortdesc="NFSv4 lease time (seconds)",
                  longdesc="NFSv4 lease (10-3600 s): how long a silent client keeps its state."),
        Parameter("threads", type="integer", default="8", check=parse_threads,
                  shortdesc="nfsd threads", longdesc="Number of nfsd threads (1-8192)."),
        Parameter("check_address", default="", check=parse_check_address,
                  shortdesc="Address for the depth-20 monitor's RPC calls",
                  longdesc="The floating IP: the depth-20 monitor calls nfsd and rpc.mountd "
                           "there, as clients do (on the loopback until it is on this node). "
                           "Empty: the loopback."),
        Parameter("service_manager", default="auto", check=parse_service_manager,
                  shortdesc="auto, systemd or direct",
                  longdesc="How the daemons are started: systemd's units (nfs-server.service "
                           "and what it pulls in), or directly. auto: systemd where it runs."),
    ],
    actions=[
        Action("start", timeout=60, handler=start),
        Action("stop", timeout=60, handler=stop),
        Action("monitor", timeout=20, interval=10, depth=0, handler=monitor),
        Action("monitor", timeout=30, interval=60, depth=20, handler=monitor),
        Action("validate-all", timeout=20, handler=validate_all),
        Action("meta-data", timeout=5),
    ],
    validate=check_environment,
)


if __name__ == "__main__":
    AGENT.main()
