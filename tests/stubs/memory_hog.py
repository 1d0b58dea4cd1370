"""A real memory hog: allocates N bytes, touches every page so they are
resident, prints "ready", holds them for S seconds. Also usable as a fake
engine that eats memory while "starting" (it never listens).

usage: python memory_hog.py BYTES SECONDS [engine args are ignored]
"""

from __future__ import annotations

import sys
import time


def main() -> None:
    size, hold = int(sys.argv[1]), float(sys.argv[2])
    block = bytearray(size)
    for offset in range(0, size, 4096):
        block[offset] = 1
    print("ready", flush=True)
    time.sleep(hold)


if __name__ == "__main__":
    main()
