/*
 * vfio-probe GROUP BDF: opens a VFIO container and the IOMMU group GROUP the
 * way a VMM does (type1v2 IOMMU), then the device BDF, and prints one line
 *   MINIVMM-L1-VFIO-PROBE bdf=B group=N api=V viable=yes|no set_container=ok
 *     set_iommu=ok pgsizes=0x.. iova=START-END;.. dma_avail=N device=ok
 *     regions=N irqs=N map=ok msi_map=EINVAL
 * (one line; a failing step shows as step=<errno name> and ends the probe).
 * Exit status 0 when the container, the IOMMU and the device could be set
 * up and a 2 MiB mapping at IOVA 1 MiB could be made and removed.
 * Built statically by build.sh into the L1 image (/usr/bin/vfio-probe).
 * Only the uAPI constants it needs are spelled out, from linux/vfio.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vfio-uapi.h"

static char line[4096];
static size_t used;

static void add(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void add(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (used < sizeof(line))
        used += (size_t)vsnprintf(line + used, sizeof(line) - used, fmt, ap);
    va_end(ap);
}

static int finish(int status)
{
    printf("MINIVMM-L1-VFIO-PROBE%s\n", line);
    return status;
}

/* The symbolic name of errno (EPERM, EINVAL, ...). */
static const char *errname(void)
{
    const char *name = strerrorname_np(errno);
    return name ? name : "error";
}

/* Ends the probe: step failed with errno. */
static int failed(const char *step)
{
    add(" %s=%s", step, errname());
    return finish(1);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s GROUP BDF\n", argv[0]);
        return 2;
    }
    add(" bdf=%s group=%s", argv[2], argv[1]);

    int container = open("/dev/vfio/vfio", O_RDWR);
    if (container < 0)
        return failed("container");
    add(" api=%d", ioctl(container, GET_API_VERSION));
    if (ioctl(container, CHECK_EXTENSION, TYPE1v2_IOMMU) != 1) {
        add(" type1v2=no");
        return finish(1);
    }

    char path[64];
    snprintf(path, sizeof(path), "/dev/vfio/%s", argv[1]);
    int group = open(path, O_RDWR);
    if (group < 0)
        return failed("group");
    struct group_status status = { .argsz = sizeof(status) };
    if (ioctl(group, GROUP_GET_STATUS, &status) < 0)
        return failed("group_status");
    add(" viable=%s", (status.flags & GROUP_FLAGS_VIABLE) ? "yes" : "no");
    if (ioctl(group, GROUP_SET_CONTAINER, &container) < 0)
        return failed("set_container");
    add(" set_container=ok");
    if (ioctl(container, SET_IOMMU, TYPE1v2_IOMMU) < 0)
        return failed("set_iommu");
    add(" set_iommu=ok");

    /* First call learns the size with the capability chain. */
    struct iommu_info probe = { .argsz = sizeof(probe) };
    if (ioctl(container, IOMMU_GET_INFO, &probe) < 0)
        return failed("iommu_info");
    uint32_t size = probe.argsz > sizeof(probe) ? probe.argsz : sizeof(probe);
    struct iommu_info *info = calloc(1, size);
    if (!info)
        return finish(1);
    info->argsz = size;
    if (ioctl(container, IOMMU_GET_INFO, info) < 0)
        return failed("iommu_info");
    if (info->flags & IOMMU_INFO_PGSIZES)
        add(" pgsizes=0x%llx", (unsigned long long)info->pgsizes);
    if (info->flags & IOMMU_INFO_CAPS) {
        uint32_t off = info->cap_offset;
        while (off >= sizeof(*info) && off + sizeof(struct cap_header) <= size) {
            const char *base = (const char *)info + off;
            const struct cap_header *cap = (const void *)base;
            if (cap->id == CAP_IOVA_RANGE) {
                uint32_t n;
                memcpy(&n, base + sizeof(*cap), sizeof(n));
                add(" iova=");
                for (uint32_t i = 0; i < n; i++) {
                    uint64_t range[2];
                    memcpy(range, base + sizeof(*cap) + 8 + 16 * i, sizeof(range));
                    add("%s0x%llx-0x%llx", i ? ";" : "", (unsigned long long)range[0],
                        (unsigned long long)range[1]);
                }
            } else if (cap->id == CAP_DMA_AVAIL) {
                uint32_t avail;
                memcpy(&avail, base + sizeof(*cap), sizeof(avail));
                add(" dma_avail=%u", avail);
            }
            off = cap->next;
        }
    }

    int device = ioctl(group, GROUP_GET_DEVICE_FD, argv[2]);
    if (device < 0)
        return failed("device");
    struct device_info dinfo = { .argsz = sizeof(dinfo) };
    if (ioctl(device, DEVICE_GET_INFO, &dinfo) < 0)
        return failed("device_info");
    add(" device=ok regions=%u irqs=%u", dinfo.num_regions, dinfo.num_irqs);

    const uint64_t len = 2 << 20;
    void *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (buf == MAP_FAILED)
        return failed("mmap");
    memset(buf, 0x5a, len);
    if (vfio_map(container, buf, 1 << 20, len) < 0)
        return failed("map");
    if (vfio_unmap(container, 1 << 20, len, NULL) < 0)
        return failed("unmap");
    add(" map=ok");
    /* The host MSI window is reserved: mapping there must fail. */
    if (vfio_map(container, buf, 0xfee00000, 1 << 20) == 0) {
        vfio_unmap(container, 0xfee00000, 1 << 20, NULL);
        add(" msi_map=ok");
    } else {
        add(" msi_map=%s", errname());
    }
    return finish(0);
}
