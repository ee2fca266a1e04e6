"""`python -m tools.bench [--quick]` (what `make bench` runs): the terminal's figures
(tools/bench/terminal.py), then the offline queue's (tools/bench/saf.py), then what
keeping keys at rest costs (tools/bench/keys.py), then the catalogue's (a scan's lookup
in 100,000 items, the import, memory: tools/bench/catalogue.py), then QR payments' (scan
-> request at the acquirer, answer -> APPROVED frame, drawing the QR frame:
tools/bench/qr.py), in one run.

Options go to both: --quick for the short smoke run; --chip off (the terminal bench
only) to measure without the chip reader. Each bench bounds its own waits and says in
one line why it stopped; the status is 1 when either stopped, and the second runs even
when the first stopped.
"""
import argparse
import sys

from tools.bench import run_main
from tools.bench import catalogue as catalogue_bench
from tools.bench import keys as keys_bench
from tools.bench import qr as qr_bench
from tools.bench import saf as saf_bench
from tools.bench import terminal as terminal_bench


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke runs")
    parser.add_argument("--chip", choices=("auto", "off"), default="auto",
                        help="the terminal bench's chip reader (see python -m "
                             "tools.bench.terminal --help)")
    args = parser.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    status = run_main(terminal_bench.main, quick + ["--chip", args.chip], name="bench")
    print()
    sys.stdout.flush()
    status |= run_main(saf_bench.main, quick, name="bench.saf")
    print()
    sys.stdout.flush()
    status |= run_main(keys_bench.main, quick, name="bench.keys")
    print()
    sys.stdout.flush()
    status |= run_main(catalogue_bench.main, quick, name="bench.catalogue")
    print()
    sys.stdout.flush()
    status |= run_main(qr_bench.main, quick, name="bench.qr")
    return status


if __name__ == "__main__":
    sys.exit(main())
