#!/usr/bin/env python3
"""Writes the seed corpus of each fuzz target into fuzz/corpus/<target>/.

The inputs follow the formats documented at the top of each target in
fuzz_targets/. Run it again after changing a format: `python3 fuzz/seeds.py`.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# ---- virtio_iommu ------------------------------------------------------
T_ATTACH, T_DETACH, T_MAP, T_UNMAP, T_PROBE = 1, 2, 3, 4, 5
ALL = 0x1C  # ack BYPASS_CONFIG, MAP_UNMAP, MMIO


def header(cfg, rate=0, seed=1):
    return bytes([cfg, rate]) + struct.pack("<Q", seed)


def req(kind, domain=1, ep=1, page=0, pages=1, raw=3, split=0, flags_b=0x60):
    """Step 0: a structured request kicked at once. `domain` in 0..4, `ep`
    an index into ENDPOINTS (0 emulated, 1-2 assigned); `flags_b` carries
    the MAP flags in its top 3 bits (0x60 = READ|WRITE)."""
    a = domain  # domain(): a % 8 < 7 gives a % 5
    # endpoint(): b % 5 picks it; MAP takes its flags from b >> 5.
    b = next(x for x in range(256) if x % 5 == ep and x & 0xE0 == flags_b & 0xE0)
    return bytes([0, kind, a, b, page, pages - 1, raw, split])


def bypass(value):
    return bytes([6, value & 1])  # v >> 6 == 0: a 1-byte bypass write


def reset(system=0):
    return bytes([7, system])


def dma(page, off=0, length=8, write=1, evbuf=0):
    return bytes([8, page]) + struct.pack("<H", off) + bytes([length, write, evbuf])


def fail(mode, arg=0):
    return bytes([9, mode, arg])


def raw_chain(descs):
    """Step 5: descs of (sel, off, len8, flags, content)."""
    out = bytes([5, len(descs) - 1])
    for sel, off, ln, flags, content in descs:
        out += bytes([sel]) + struct.pack("<H", off) + bytes([ln, flags, len(content)]) + content
    return out


seeds = {
    "attach-map-unmap-detach": header(ALL)
    + req(T_ATTACH, 1, 1)
    + req(T_MAP, 1, 0, page=2, pages=2)
    + req(T_UNMAP, 1, 0, page=2, pages=2)
    + req(T_DETACH, 1, 1),
    "shared-domain-two-assigned": header(ALL | 1)
    + req(T_ATTACH, 2, 1)
    + req(T_ATTACH, 2, 2)
    + req(T_ATTACH, 2, 0)
    + req(T_MAP, 2, 0, page=4, pages=1)
    + dma(4)
    + req(T_UNMAP, 2, 0, page=0, pages=8),
    "bypass-domain-and-switch": header(ALL | 1 | 2)
    + req(T_ATTACH, 3, 1, flags_b=0x80)
    + bypass(0)
    + req(T_DETACH, 3, 1)
    + bypass(1)
    + req(T_PROBE, 0, 1),
    "failures": header(ALL | 2, rate=40, seed=7)
    + req(T_ATTACH, 1, 1)
    + req(T_MAP, 1, 0, page=1)
    + fail(0, 2)
    + req(T_ATTACH, 1, 2)
    + req(T_UNMAP, 1, 0, page=0, pages=8)
    + reset(1),
    "small-caps": header(ALL | 0x20)
    + req(T_ATTACH, 1, 0)
    + b"".join(req(T_MAP, 1, 0, page=p) for p in range(8)),
    "faults-on-the-event-queue": header(ALL)
    + req(T_ATTACH, 1, 0)
    + req(T_MAP, 1, 0, page=3, flags_b=0x20)
    + dma(3, write=1)
    + dma(9, write=0),
    "raw-chains": header(ALL)
    + raw_chain([(2, 0x100, 24, 1, bytes([0x42, 0, 0, 0]) + bytes(20)), (2, 0x200, 4, 2, b"")])
    + raw_chain([(0x40 | 2, 0x300, 0, 0, bytes([1, 0, 0, 0, 1, 0, 0, 0, 8]))]),
    "reset-and-requeue": header(ALL | 1)
    + req(T_ATTACH, 1, 1)
    + reset(0)
    + req(T_ATTACH, 1, 2)
    + bytes([4, T_MAP, 1, 0, 1, 0, 3])
    + req(T_DETACH, 1, 2),
}
for name, data in seeds.items():
    write("virtio_iommu", name, data)

# ---- host_regions ------------------------------------------------------
regions = {
    "intel": "0000:01:00.0\n0x00000000fee00000 0x00000000feefffff msi\n",
    "amd": "01:00.0\n0x00000000fee00000 0x00000000feefffff msi\n"
    "0x000000fd00000000 0x000000ffffffffff reserved\n",
    "smmu": "0000:00:02.0\n0x0000000008000000 0x00000000080fffff sw-msi\n",
    "rmrr": "0000:00:1f.3\n0x00000000000e0000 0x00000000000effff direct\n"
    "0x00000000bf000000 0x00000000bfffffff direct-relaxable\n",
    "comments": "ffff:ff:1f.7\n# host B\n\n0xfd00000000 0xffffffffff reserved # HT hole\n",
    "bad-line": "0000:01:00.8\n0x2000 0x1fff msi\n",
}
for name, text in regions.items():
    write("host_regions", name, text.encode())

# ---- planner -----------------------------------------------------------


def plan_seed(mem_sel, mem, flags, regions=(), iova=(), pgsizes=None):
    out = bytes([mem_sel])
    out += struct.pack("<H", mem) if mem_sel in (0, 3) else bytes([mem])
    out += bytes([flags])
    if flags & 1:
        out += bytes([1]) + struct.pack("<H", 64)  # 64 x 2 MiB
    out += bytes([len(regions)])
    for kind, near, off, len_sel, length in regions:
        out += bytes([kind, near]) + struct.pack("<H", off) + bytes([len_sel])
        out += struct.pack("<H", length) if len_sel < 2 else bytes([length])
    if flags & 4:
        out += bytes([len(iova) - 1])
        for near, off, len_sel, length in iova:
            out += bytes([near]) + struct.pack("<H", off) + bytes([len_sel])
            out += struct.pack("<H", length) if len_sel < 2 else bytes([length])
    if flags & 8:
        out += struct.pack("<Q", pgsizes)
    return out


planner = {
    "plain-512m": plan_seed(0, 512, 0),
    "intel-msi": plan_seed(0, 4096, 4, regions=[(2, 5, 0, 1, 0)],
                           iova=[(0, 0, 2, 3), (5, 1, 2, 200)]),
    "amd-ht-hole": plan_seed(3, 1100, 0, regions=[(2, 5, 0, 1, 0), (4, 8, 0, 2, 12)]),
    "direct-allowed": plan_seed(2, 0, 2, regions=[(0, 2, 16, 1, 8)]),
    "low-collision": plan_seed(0, 256, 0, regions=[(4, 0, 1, 0, 16)]),
    "page-sizes": plan_seed(0, 1024, 8 | 1, pgsizes=0x40201000),
}
for name, data in planner.items():
    write("planner", name, data)
