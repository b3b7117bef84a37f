"""The running testbed's endpoints and credentials (testbed/run/env), for the bench scripts."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TB = os.path.join(ROOT, "testbed", "run")


def tb_env():
    """The `export K=V` lines of testbed/run/env, as a dict."""
    env = {}
    for line in open(os.path.join(TB, "env")):
        if line.startswith("export ") and "=" in line:
            k, v = line[len("export "):].strip().split("=", 1)
            env[k] = v
    return env
