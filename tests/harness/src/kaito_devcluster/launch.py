"""`python -m kaito_devcluster.launch --env-file FILE -- ENTRYPOINT`: run a RayJob entrypoint with the
pod's env (read from a 0600 file, so Secret values never show in the Ray dashboard's job record) and the
dev cluster's virtualenv first on PATH."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kaito_devcluster.launch")
    p.add_argument("--env-file", type=Path, required=True)
    p.add_argument("entrypoint", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.entrypoint[1:] if args.entrypoint[:1] == ["--"] else args.entrypoint
    if not command:
        p.error("no entrypoint given")
    env = dict(os.environ)
    env.update(json.loads(args.env_file.read_text()))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    sys.stdout.flush()
    os.execvpe("/bin/sh", ["/bin/sh", "-c", " ".join(command)], env)
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
