#!/usr/bin/env python3
"""resident.py PID...: kB of the physical pages resident in these processes
together, each page counted once.

RSS summed over processes counts twice every page they share. The daemon is
two processes forked from one (the network side and the keeper), which share
the libraries' pages and the copy-on-write pages of the fork, so the sum
overstates what the daemon holds; this is the figure to set against a single
process's RSS. It reads the page frame numbers of /proc/PID/pagemap, which
the kernel shows only to root (CAP_SYS_ADMIN): otherwise it prints "null".
"""
import struct
import sys

PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1
PAGE_KB = 4


def frames(pid):
    seen = set()
    with open("/proc/%s/maps" % pid) as maps, open("/proc/%s/pagemap" % pid, "rb") as pm:
        for line in maps:
            fields = line.split()
            if fields[-1] == "[vsyscall]":
                continue
            lo, hi = (int(x, 16) for x in fields[0].split("-"))
            pm.seek(lo // 4096 * 8)
            data = pm.read((hi - lo) // 4096 * 8)
            for (entry,) in struct.iter_unpack("<Q", data):
                if entry & PRESENT:
                    seen.add(entry & PFN_MASK)
    return seen


def main():
    pages = set()
    for pid in sys.argv[1:]:
        try:
            pages |= frames(pid)
        except OSError:
            pass  # a process that ended in between holds nothing
    # Without the capability every present page reads as frame 0.
    print("null" if pages <= {0} else len(pages) * PAGE_KB)


main()
