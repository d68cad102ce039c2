#!/usr/bin/env python3
"""Find integers x for which ln(x + 1) lies closest to a float32 rounding midpoint.

These are the inputs on which a float32 log1p is most likely to round the wrong way, so
tests/core/test_ops.cpp embeds the worst of them as constants for sluice::log1p_exact (and for
its double-double fallback, detail::dd_log_int / detail::round_dd_to_float).

Two searches, and an exact check of every candidate with mpmath at 200 bits:
  1. brute force: a cheap double-precision filter over ~26 million x (every x below 2^24, windows
     around every power of two up to 2^63, the top of the int64 range, and random x spread evenly
     in log scale up to 2^63 - 1);
  2. inversion: for a float32 midpoint m, the integers next to exp(m) - 1 have ln(x+1) within
     about 1/x of m. Above 2^30 or so this beats any brute force: near 2^62 the distance is ~2^-67
     relative, far below what a double (or an x87 long double) evaluation can decide.
The worst cases are printed with at most one x per binade [2^k, 2^(k+1)), for variety, then the
worst few below 2^24.

Output, for the worst N: x, the correctly rounded float32 bits of ln(x + 1) as hex, the relative
distance |ln(x+1) - midpoint| / ln(x+1), and ln(x + 1) as a double-double (hi, lo). With --cpp
the same as C++ initialisers.

Needs python3 and mpmath (no numpy). Deterministic (fixed seed). Takes about a minute.
    python3 scripts/find_log_hard_cases.py [--count 12] [--small 4] [--cpp] [--quick]
"""
import argparse
import heapq
import math
import random

import mpmath
from mpmath import mp, mpf

INT64_MAX = (1 << 63) - 1
TWO24 = float(1 << 24)


def coarse_distance(x):
    """Relative distance of ln(x+1) (double precision) to the nearest float32 midpoint."""
    v = math.log(x + 1)  # ints beyond 2^53 are rounded to double first: error <= 2^-53 absolute
    m, _ = math.frexp(v)  # v = m * 2^e, m in [0.5, 1)
    s = m * TWO24          # exact; float32 midpoints are at half-integers of s
    return abs((s - math.floor(s)) - 0.5) / s


def exact(x):
    """(float32 bits, relative distance to the nearest midpoint, ln value) at 200 bits."""
    mp.prec = 200
    lv = mpmath.log(mpf(x + 1))
    e = int(mpmath.floor(mpmath.log(lv, 2)))
    # guard against log2 rounding at exact powers of two
    while mpmath.ldexp(mpf(1), e) > lv:
        e -= 1
    while mpmath.ldexp(mpf(1), e + 1) <= lv:
        e += 1
    scaled = mpmath.ldexp(lv, 23 - e)  # in [2^23, 2^24)
    n = int(mpmath.floor(scaled))
    frac = scaled - n
    if frac > 0.5 or (frac == 0.5 and n % 2 == 1):
        n += 1
    if n == 1 << 24:
        n >>= 1
        e += 1
    bits = ((e + 127) << 23) | (n - (1 << 23))
    dist = abs(frac - mpf(0.5)) * mpmath.ldexp(mpf(1), e - 23) / lv
    return bits, dist, lv


def dd_of(v):
    hi = float(v)
    lo = float(v - mpf(hi))
    return hi, lo


def candidates(quick, seed):
    limit = 1 << (18 if quick else 24)
    yield from range(1, limit)  # x = 0 gives ln 1 = 0, exact
    width = 2000 if quick else 1 << 16
    for k in range(24, 63):
        p = 1 << k
        yield from range(max(limit, p - width), min(INT64_MAX, p + width) + 1)
    yield from range(INT64_MAX - width * 5, INT64_MAX + 1)
    rng = random.Random(seed)
    for _ in range(200000 if quick else 4000000):
        k = rng.uniform(24.0, 63.0)
        x = int(2.0 ** k)
        x = min(INT64_MAX, x + rng.randrange(1 << 12))
        yield x


def inverse_search(quick, seed):
    """x = exp(m) - 1 rounded down and up, for float32 midpoints m spread over the int64 range."""
    mp.prec = 200
    rng = random.Random(seed + 1)
    xs = set()
    for _ in range(200 if quick else 4000):
        k = rng.uniform(20.0, 63.0)
        x = min(INT64_MAX - 1, int(2.0 ** k))
        lv = mpmath.log(mpf(x + 1))
        e = int(mpmath.floor(mpmath.log(lv, 2)))
        scale = mpmath.ldexp(mpf(1), 23 - e)
        mid = (mpmath.floor(lv * scale) + mpf(0.5)) / scale
        y = mpmath.exp(mid) - 1
        for cand in (int(mpmath.floor(y)), int(mpmath.floor(y)) + 1):
            if 0 < cand <= INT64_MAX:
                xs.add(cand)
    return sorted(xs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=12, help="how many cases, one per binade of x")
    ap.add_argument("--small", type=int, default=4, help="how many more cases below 2^24")
    ap.add_argument("--cpp", action="store_true", help="print C++ initialisers")
    ap.add_argument("--quick", action="store_true", help="a much smaller search")
    ap.add_argument("--seed", type=int, default=20240611)
    a = ap.parse_args()

    # Keep a generous pool by the coarse distance: its error (~2^-52 relative) is far below the
    # distances that matter, and the exact check re-ranks the pool.
    pool = []
    searched = 0
    seen = set()
    for x in candidates(a.quick, a.seed):
        searched += 1
        d = coarse_distance(x)
        if len(pool) < a.count * 20:
            if x not in seen:
                seen.add(x)
                heapq.heappush(pool, (-d, x))
        elif d < -pool[0][0] and x not in seen:
            seen.add(x)
            _, old = heapq.heapreplace(pool, (-d, x))
            seen.discard(old)

    found = {x for _, x in pool}
    inverse = inverse_search(a.quick, a.seed)
    found.update(inverse)

    rows = []
    for x in found:
        bits, dist, lv = exact(x)
        rows.append((dist, x, bits, lv))
    rows.sort()
    picked, binades = [], set()
    for row in rows:
        k = row[1].bit_length()
        if k in binades:
            continue
        binades.add(k)
        picked.append(row)
        if len(picked) == a.count:
            break
    # and the worst below 2^24 (all of which the brute force saw), which the engine's table covers
    small = [row for row in rows if row[1] < (1 << 24) and row not in picked][: a.small]
    rows = picked + small

    print(f"# searched {searched} values of x by brute force and {len(inverse)} by inversion; worst {len(picked)} "
          f"(one per binade of x) and worst {len(small)} below 2^24, by relative distance to a float32 midpoint")
    for dist, x, bits, lv in rows:
        hi, lo = dd_of(lv)
        k = -float(mpmath.log(dist, 2))
        if a.cpp:
            print(f"    {{{x}ll, 0x{bits:08x}u, {hi.hex()}, {lo.hex()}}},  // rel. distance 2^-{k:.1f}")
        else:
            print(f"x={x}  float32=0x{bits:08x}  rel_distance={mpmath.nstr(dist, 6)} (2^-{k:.1f})  "
                  f"ln=({hi.hex()}, {lo.hex()})")


if __name__ == "__main__":
    main()
