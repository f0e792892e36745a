"""Run one command and report its rusage: ``python -I -S launcher.py FD ARGV...``.

Why a launcher: Linux seeds a process's ``ru_maxrss`` at ``execve`` with the high-water
RSS of the memory image it replaces, i.e. of the parent that forked it. Children
forked straight from the benchmark harness (tens of MB of Python) would all report at
least the harness's size. This script imports nothing but ``os``/``sys``/``time``
(about 5 MB resident), forks, execs ``ARGV``, waits with ``wait4`` and writes
``wall cpu_seconds maxrss_kib exit_code`` to file descriptor ``FD``.

It must stay free of imports from the benchmarks package (it runs with ``-I -S``).
"""

import os
import sys
import time


def main() -> int:
    result_fd = int(sys.argv[1])
    argv = sys.argv[2:]
    os.set_inheritable(result_fd, False)  # the measured command must not hold it
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    line = f"{wall:.6f} {usage.ru_utime + usage.ru_stime:.6f} {usage.ru_maxrss} {code}\n"
    os.write(result_fd, line.encode())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
