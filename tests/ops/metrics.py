#!/usr/bin/env python3
"""Scrapes a /metrics URL and parses it with prometheus_client's own text
parser (a real Prometheus text-format parser, from PyPI). A parse error
exits 1. Prints one line per family and per sample, canonicalised:

  TYPE <family> <type>
  <sample name>{<sorted labels>} <value>

so that tests/ops/run.sh can grep exact values.
"""

import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main():
    url = sys.argv[1]
    with urllib.request.urlopen(url, timeout=5) as r:
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode("utf-8")
    if not ctype.startswith("text/plain"):
        print("bad content type: %r" % ctype, file=sys.stderr)
        return 1
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the point of the test: report, fail
        print("prometheus_client cannot parse /metrics: %s" % e, file=sys.stderr)
        return 1
    for fam in families:
        print("TYPE %s %s" % (fam.name, fam.type))
        for s in fam.samples:
            labels = ",".join('%s="%s"' % (k, v) for k, v in sorted(s.labels.items()))
            print("%s{%s} %r" % (s.name, labels, float(s.value)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
