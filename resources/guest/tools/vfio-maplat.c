/*
 * vfio-maplat LABEL GROUP BDF [N_4K N_64K N_2M [SECS]]: DMA map/unmap latency
 * as a guest userspace driver sees it. Sets up a type1v2 VFIO container on
 * IOMMU group GROUP (the device BDF must be bound to vfio-pci), then for
 * 4 KiB, 64 KiB and 2 MiB mappings runs N iterations (defaults 2000, 2000,
 * 1000; each size stops early after SECS seconds, default 8) of
 * VFIO_IOMMU_MAP_DMA + VFIO_IOMMU_UNMAP_DMA at one fixed IOVA, timing each
 * pair with CLOCK_MONOTONIC, and prints per size
 *   MINIVMM-MAPLAT vmm=LABEL size=BYTES n=N p50_ns=.. p90_ns=.. p99_ns=..
 *     mean_ns=.. min_ns=.. max_ns=.. map_p50_ns=.. unmap_p50_ns=..
 * after one setup line
 *   MINIVMM-MAPLAT-SETUP vmm=LABEL bdf=B group=N pgsizes=0x.. iova=0x..
 *     backing=hugetlb|thp|4k device=ok|ERR
 * Exit status 0 when every size produced a result; on a failing step it
 * prints `MINIVMM-MAPLAT-ERROR vmm=LABEL step=S errno=NAME` and exits 1.
 *
 * Behind a virtio-iommu each guest MAP_DMA becomes: vfio type1 pins the
 * pages -> iommu_map -> virtio-iommu MAP request -> the VMM, which shadows
 * it into the host IOMMU (a VFIO MAP_DMA one level down); UNMAP_DMA the
 * same way back. Only the uAPI constants it needs are spelled out, from
 * linux/vfio.h. Built statically into the L2 initramfs
 * (/usr/bin/vfio-maplat) by resources/guest-initramfs.sh.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vfio-uapi.h"

#define SZ_2M (2ull << 20)

static const char *label = "unknown";

static const char *errname(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "error";
}

static int failed(const char *step)
{
    printf("MINIVMM-MAPLAT-ERROR vmm=%s step=%s errno=%s\n", label, step, errname(errno));
    fflush(stdout);
    return 1;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* vfio_unmap, failing unless the kernel unmapped all of it. */
static int unmap(int container, uint64_t iova, uint64_t size)
{
    uint64_t done;
    if (vfio_unmap(container, iova, size, &done) < 0)
        return -1;
    if (done != size) {
        errno = ENXIO;
        return -1;
    }
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (nearest rank) of n sorted samples. */
static uint64_t percentile(const uint64_t *sorted, size_t n, unsigned p)
{
    size_t rank = (n * p + 99) / 100;
    if (rank == 0)
        rank = 1;
    return sorted[rank - 1];
}

/*
 * Picks a 2 MiB-aligned IOVA for a 2 MiB mapping inside the container's
 * usable IOVA ranges, at or above 16 MiB (clear of anything low). Returns
 * 0 when none fits.
 */
static uint64_t pick_iova(int container, uint64_t *pgsizes)
{
    struct iommu_info probe = { .argsz = sizeof(probe) };
    if (ioctl(container, IOMMU_GET_INFO, &probe) < 0)
        return 0;
    uint32_t size = probe.argsz > sizeof(probe) ? probe.argsz : sizeof(probe);
    struct iommu_info *info = calloc(1, size);
    if (!info)
        return 0;
    info->argsz = size;
    if (ioctl(container, IOMMU_GET_INFO, info) < 0) {
        free(info);
        return 0;
    }
    *pgsizes = (info->flags & IOMMU_INFO_PGSIZES) ? info->pgsizes : 0;
    uint64_t want = 16ull << 20, found = 0;
    int have_ranges = 0;
    if (info->flags & IOMMU_INFO_CAPS) {
        uint32_t off = info->cap_offset;
        while (!found && off >= sizeof(*info) && off + sizeof(struct cap_header) <= size) {
            const char *base = (const char *)info + off;
            const struct cap_header *cap = (const void *)base;
            if (cap->id == CAP_IOVA_RANGE) {
                uint32_t n;
                memcpy(&n, base + sizeof(*cap), sizeof(n));
                have_ranges = 1;
                for (uint32_t i = 0; i < n && !found; i++) {
                    uint64_t range[2];
                    memcpy(range, base + sizeof(*cap) + 8 + 16 * i, sizeof(range));
                    uint64_t start = range[0] > want ? range[0] : want;
                    start = (start + SZ_2M - 1) & ~(SZ_2M - 1);
                    if (start >= range[0] && start + SZ_2M - 1 <= range[1] && start + SZ_2M > start)
                        found = start;
                }
            }
            off = cap->next;
        }
    }
    free(info);
    return have_ranges ? found : want;
}

/* Whether the buffer at buf is backed by a transparent huge page. */
static int is_thp(void *buf)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f)
        return 0;
    char line[256];
    int inside = 0, thp = 0;
    uintptr_t addr = (uintptr_t)buf;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = addr >= lo && addr < hi;
            continue;
        }
        unsigned long kb;
        if (inside && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
            thp = kb >= 2048;
    }
    fclose(f);
    return thp;
}

int main(int argc, char **argv)
{
    if (argc != 4 && argc != 7 && argc != 8) {
        fprintf(stderr, "usage: %s LABEL GROUP BDF [N_4K N_64K N_2M [SECS]]\n", argv[0]);
        return 2;
    }
    label = argv[1];
    const char *group_name = argv[2], *bdf = argv[3];
    const uint64_t sizes[3] = { 4096, 64 << 10, SZ_2M };
    long iters[3] = { 2000, 2000, 1000 };
    double secs = 8;
    if (argc >= 7)
        for (int i = 0; i < 3; i++)
            iters[i] = strtol(argv[4 + i], NULL, 0);
    if (argc == 8)
        secs = strtod(argv[7], NULL);

    int container = open("/dev/vfio/vfio", O_RDWR);
    if (container < 0)
        return failed("container");
    if (ioctl(container, CHECK_EXTENSION, TYPE1v2_IOMMU) != 1) {
        errno = ENOTSUP;
        return failed("type1v2");
    }
    char path[64];
    snprintf(path, sizeof(path), "/dev/vfio/%s", group_name);
    int group = open(path, O_RDWR);
    if (group < 0)
        return failed("group");
    struct group_status status = { .argsz = sizeof(status) };
    if (ioctl(group, GROUP_GET_STATUS, &status) < 0)
        return failed("group_status");
    if (!(status.flags & GROUP_FLAGS_VIABLE)) {
        errno = EBUSY;
        return failed("viable");
    }
    if (ioctl(group, GROUP_SET_CONTAINER, &container) < 0)
        return failed("set_container");
    if (ioctl(container, SET_IOMMU, TYPE1v2_IOMMU) < 0)
        return failed("set_iommu");
    uint64_t pgsizes = 0;
    uint64_t iova = pick_iova(container, &pgsizes);
    if (!iova) {
        errno = ERANGE;
        return failed("iova");
    }
    /* A userspace driver holds the device open; the mappings do not need it. */
    int device = ioctl(group, GROUP_GET_DEVICE_FD, bdf);
    const char *device_state = device >= 0 ? "ok" : errname(errno);

    /*
     * The buffer: one 2 MiB huge page (hugetlbfs, when the scenario reserved
     * one), so that every mapping is physically contiguous and each MAP_DMA
     * and UNMAP_DMA is one IOMMU request whatever its size. Without one, 4
     * MiB of anonymous memory used from its first 2 MiB boundary, as a
     * transparent huge page if the kernel gives one (backing=thp), else
     * 4 KiB pages (backing=4k: a mapping is as many requests as it has
     * physically contiguous runs).
     */
    const char *backing = "hugetlb";
    char *buf = mmap(NULL, SZ_2M, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (buf == MAP_FAILED) {
        char *raw = mmap(NULL, 2 * SZ_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
        if (raw == MAP_FAILED)
            return failed("mmap");
        buf = (char *)(((uintptr_t)raw + SZ_2M - 1) & ~(uintptr_t)(SZ_2M - 1));
        madvise(buf, SZ_2M, MADV_HUGEPAGE);
        backing = NULL;
    }
    memset(buf, 0x5a, SZ_2M);
    if (!backing)
        backing = is_thp(buf) ? "thp" : "4k";
    printf("MINIVMM-MAPLAT-SETUP vmm=%s bdf=%s group=%s pgsizes=0x%llx iova=0x%llx backing=%s device=%s\n",
           label, bdf, group_name, (unsigned long long)pgsizes, (unsigned long long)iova,
           backing, device_state);
    fflush(stdout);

    int rc = 0;
    for (int s = 0; s < 3; s++) {
        uint64_t size = sizes[s];
        long n = iters[s] > 0 ? iters[s] : 1;
        uint64_t *pair = calloc((size_t)n, sizeof(*pair));
        uint64_t *maps = calloc((size_t)n, sizeof(*maps));
        uint64_t *unmaps = calloc((size_t)n, sizeof(*unmaps));
        if (!pair || !maps || !unmaps)
            return failed("calloc");
        /* Warm-up: the first pins and page-table allocations are not timed. */
        for (int i = 0; i < 5; i++) {
            if (vfio_map(container, buf, iova, size) < 0)
                return failed("map");
            if (unmap(container, iova, size) < 0)
                return failed("unmap");
        }
        uint64_t deadline = now_ns() + (uint64_t)(secs * 1e9);
        long done = 0;
        for (; done < n; done++) {
            uint64_t t0 = now_ns();
            if (vfio_map(container, buf, iova, size) < 0)
                return failed("map");
            uint64_t t1 = now_ns();
            if (unmap(container, iova, size) < 0)
                return failed("unmap");
            uint64_t t2 = now_ns();
            maps[done] = t1 - t0;
            unmaps[done] = t2 - t1;
            pair[done] = t2 - t0;
            if (t2 > deadline) {
                done++;
                break;
            }
        }
        long double sum = 0;
        for (long i = 0; i < done; i++)
            sum += pair[i];
        qsort(pair, (size_t)done, sizeof(*pair), cmp_u64);
        qsort(maps, (size_t)done, sizeof(*maps), cmp_u64);
        qsort(unmaps, (size_t)done, sizeof(*unmaps), cmp_u64);
        printf("MINIVMM-MAPLAT vmm=%s size=%llu n=%ld p50_ns=%llu p90_ns=%llu p99_ns=%llu"
               " mean_ns=%llu min_ns=%llu max_ns=%llu map_p50_ns=%llu unmap_p50_ns=%llu\n",
               label, (unsigned long long)size, done,
               (unsigned long long)percentile(pair, (size_t)done, 50),
               (unsigned long long)percentile(pair, (size_t)done, 90),
               (unsigned long long)percentile(pair, (size_t)done, 99),
               (unsigned long long)(sum / done), (unsigned long long)pair[0],
               (unsigned long long)pair[done - 1],
               (unsigned long long)percentile(maps, (size_t)done, 50),
               (unsigned long long)percentile(unmaps, (size_t)done, 50));
        fflush(stdout);
        if (done < 1)
            rc = 1;
        free(pair);
        free(maps);
        free(unmaps);
    }
    if (device >= 0)
        close(device);
    close(group);
    close(container);
    return rc;
}
