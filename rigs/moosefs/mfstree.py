"""Write random files under a directory, or checksum every file under it; print JSON.

    mfstree.py write DIR COUNT PREFIX SIZE   -> {relpath: sha256} of the new files
    mfstree.py sum DIR                       -> {relpath: sha256} of every file

Run as a child process so that a hung FUSE call can be killed by a timeout.
"""
import hashlib
import json
import os
import sys


def write(root, count, prefix, size):
    sums = {}
    for index in range(int(count)):
        relpath = f"{prefix}{index // 100}/{prefix}{index}"
        os.makedirs(os.path.join(root, os.path.dirname(relpath)), exist_ok=True)
        data = os.urandom(int(size) + index)
        with open(os.path.join(root, relpath), "wb") as out:
            out.write(data)
        sums[relpath] = hashlib.sha256(data).hexdigest()
    return sums


def checksum(root):
    sums = {}
    for directory, _, files in os.walk(root):
        for name in files:
            path = os.path.join(directory, name)
            with open(path, "rb") as source:
                sums[os.path.relpath(path, root)] = hashlib.sha256(source.read()).hexdigest()
    return sums


if __name__ == "__main__":
    command, root, *rest = sys.argv[1:]
    print(json.dumps(write(root, *rest) if command == "write" else checksum(root)))
