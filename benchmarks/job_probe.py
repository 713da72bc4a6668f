"""Run `fedakd train` and report where its CPU time goes: ``python job_probe.py LAUNCH_TIME <train arguments>``.

Run as a file, not as a module of ``benchmarks``: it imports ``fedakd`` from whatever tree is first on
the path (PYTHONPATH), so the benchmark can run the same probe over an older commit's code. It adds
one engine callback and prints, on stderr:
- ``FEDAKD_PROBE_FIRST_STEP=<wall> <cpu>``: seconds from LAUNCH_TIME (wall) and from the process's start
  (CPU, user + system) to the first local step;
- ``FEDAKD_PROBE_ROUNDS_CPU=<cpu>``: CPU seconds the main thread spent inside rounds (from each round's
  start to its end, evaluation and checkpoint included). The main thread's alone: with one torch thread
  it does all the training, and a helper thread working meanwhile (an older commit's MLflow logger)
  is overhead, not rounds.
The caller takes the job's total CPU from os.wait4; what is not in rounds is the job's overhead.
"""

import resource
import sys
import time

FIRST_STEP_MARK, ROUNDS_MARK = "FEDAKD_PROBE_FIRST_STEP=", "FEDAKD_PROBE_ROUNDS_CPU="


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(launch_time: float, arguments: list[str]) -> int:
    from fedakd.cli import main as fedakd_main
    from fedakd.engine import Callback

    class Probe(Callback):
        first = True
        started = 0.0
        rounds_cpu = 0.0

        def on_round_start(self, round_idx):
            if self.first:
                print(f"{FIRST_STEP_MARK}{time.time() - launch_time:.4f} {cpu_seconds():.4f}", file=sys.stderr,
                      flush=True)
                self.first = False
            self.started = time.thread_time()

        def on_round_end(self, record, timing):
            self.rounds_cpu += time.thread_time() - self.started

    probe = Probe()
    status = fedakd_main(arguments, callbacks=[probe])
    print(f"{ROUNDS_MARK}{probe.rounds_cpu:.4f}", file=sys.stderr, flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]), sys.argv[2:]))
