"""The command agent inside each lab VM (systemd unit pyha-guest.service).

It first gives the VM its lab address (pyha.ip= on the kernel command line, on eth0),
then serves the host over the virtio-serial ports named `pyha.*`: one JSON object per
line in, one per line out, matched by "id".  The ports survive a cut of the network,
so the lab can still look inside a node whose cable it pulled.

Requests: {"op": "run", "argv", "env", "input", "timeout", "cwd"} -> rc/stdout/stderr;
"spawn" (detached, output appended to "log") -> pid; "read"/"write" a file (base64);
"ping" -> uptime and boot id.  Runs with the guest's /usr/bin/python3, stdlib only.
"""
import base64
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

PORTS = "/sys/class/virtio-ports"


def cmdline():
    words = open("/proc/cmdline").read().split()
    return dict(w.split("=", 1) for w in words if w.startswith("pyha.") and "=" in w)


def configure_network(args, deadline=120):
    address, iface = args.get("pyha.ip"), args.get("pyha.if", "eth0")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=False)
    if not address:
        return
    end = time.monotonic() + deadline
    while not os.path.exists(f"/sys/class/net/{iface}") and time.monotonic() < end:
        time.sleep(0.1)   # virtio_net is loaded by udev's coldplug
    subprocess.run(["ip", "addr", "replace", address, "dev", iface], check=False)
    subprocess.run(["ip", "link", "set", iface, "up"], check=False)


def find_ports(count, deadline=120):
    """The /dev nodes of the `pyha.*` ports, once all `count` of them appeared."""
    end = time.monotonic() + deadline
    found = []
    while time.monotonic() < end:
        found = []
        for dev in (os.listdir(PORTS) if os.path.isdir(PORTS) else []):
            try:
                with open(f"{PORTS}/{dev}/name") as f:
                    named = f.read().startswith("pyha.")
            except OSError:
                continue
            if named and os.path.exists(f"/dev/{dev}"):
                found.append(f"/dev/{dev}")
        if len(found) >= count:
            break
        time.sleep(0.1)
    return sorted(found)


def do_run(req):
    timeout = req.get("timeout") or 120
    try:
        proc = subprocess.Popen(req["argv"], env=req.get("env"), cwd=req.get("cwd"),
                                stdin=subprocess.PIPE if req.get("input") is not None
                                else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        return {"rc": 127, "stdout": "", "stderr": f"{req['argv'][0]}: {exc}"}
    try:
        out, err = proc.communicate(
            input=req["input"].encode() if req.get("input") is not None else None,
            timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        out, err = proc.communicate()
        timed_out = True
    return {"rc": proc.returncode, "stdout": out.decode(errors="replace"),
            "stderr": err.decode(errors="replace"), "timed_out": timed_out}


def do_spawn(req):
    log = open(req.get("log") or "/dev/null", "ab")
    log.write(f"--- {time.strftime('%H:%M:%S')} start {' '.join(req['argv'])}\n".encode())
    log.flush()
    try:
        proc = subprocess.Popen(req["argv"], env=req.get("env"), cwd=req.get("cwd") or "/",
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    except OSError as exc:
        return {"error": f"{req['argv'][0]}: {exc}"}
    finally:
        log.close()
    # Reap it when it ends, so it never lingers as a zombie under the agent.
    threading.Thread(target=proc.wait, daemon=True).start()
    return {"pid": proc.pid}


def do_read(req):
    try:
        with open(req["path"], "rb") as f:
            return {"data": base64.b64encode(f.read()).decode()}
    except OSError as exc:
        return {"error": str(exc)}


def do_write(req):
    try:
        tmp = req["path"] + ".pyha-tmp"
        with open(tmp, "wb") as f:
            f.write(base64.b64decode(req["data"]))
        os.chmod(tmp, req.get("mode", 0o644))
        os.replace(tmp, req["path"])
        return {"ok": True}
    except OSError as exc:
        return {"error": str(exc)}


def do_ping(req):
    return {"uptime": float(open("/proc/uptime").read().split()[0]),
            "boot_id": open("/proc/sys/kernel/random/boot_id").read().strip()}


OPS = {"run": do_run, "spawn": do_spawn, "read": do_read, "write": do_write, "ping": do_ping}


def handle(line):
    req = {}
    try:
        req = json.loads(line)
        reply = OPS[req["op"]](req)
    except Exception as exc:   # a bad request must never end the agent
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    reply["id"] = req.get("id") if isinstance(req, dict) else None
    return (json.dumps(reply) + "\n").encode()


def serve(dev):
    fd = os.open(dev, os.O_RDWR)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    buf = b""
    while True:
        events = poller.poll(1000)
        if not events:
            continue
        mask = events[0][1]
        if not mask & select.POLLIN:
            time.sleep(0.05)   # POLLHUP: no host on the other end yet
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            time.sleep(0.05)
            continue
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            reply = handle(line)
            view = memoryview(reply)
            try:
                while view:
                    view = view[os.write(fd, view):]
            except OSError:
                pass   # the host went away: its reply is lost, it will ask again


def main():
    args = cmdline()
    # Our messages land beside the VM's files on the host (the lab share).
    if args.get("pyha.lab") and args.get("pyha.name"):
        try:
            log = open(f"{args['pyha.lab']}/{args['pyha.name']}/guest.log", "a")
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        except OSError:
            pass
    print(f"pyha-guest: started {time.strftime('%F %T')}", flush=True)
    # Our devices, without waiting for udev's coldplug to get to them.
    proc = subprocess.run(["modprobe", "-a", "virtio_console", "virtio_net"],
                          capture_output=True, text=True)
    if proc.returncode:
        print(f"pyha-guest: modprobe: {proc.stderr.strip()}", flush=True)
    configure_network(args)
    ports = find_ports(int(args.get("pyha.ports", 1)))
    if not ports:
        sys.exit("pyha-guest: no virtio-serial port named pyha.*")
    threads = [threading.Thread(target=serve, args=(p,), daemon=True) for p in ports]
    for t in threads:
        t.start()
    print(f"pyha-guest: serving {' '.join(ports)}", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
