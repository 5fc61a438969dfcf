"""A small-object workload for capturing python3's allocation trace.

Builds many small ints, floats, strings, tuples, lists and dicts from
perldiag.pod (shipped by Debian's perl-modules-5.36), then drops them.
"""

import collections

with open("/usr/share/perl/5.36.0/pod/perldiag.pod", encoding="utf-8") as f:
    lines = f.read().splitlines()

words = [w.lower().strip(".,;:()'\"") for line in lines[:3000] for w in line.split()]
counts = collections.Counter(w for w in words if w)
pairs = [(w, n, n * 0.5) for w, n in counts.items()]
pairs.sort(key=lambda p: (-p[1], p[0]))
index = {}
for number, line in enumerate(lines[:2000]):
    for w in line.split()[:6]:
        index.setdefault(w[:3], []).append(number * 1000 + len(w))
points = [{"x": i, "y": i * 7 % 1000, "tag": f"p{i % 97}"} for i in range(8000)]
del points[::2]
total = sum(p["y"] for p in points) + sum(len(v) for v in index.values())
print(len(lines), len(words), len(counts), pairs[0], total)
