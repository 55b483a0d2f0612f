/*
 * The part of Linux's VFIO uAPI (linux/vfio.h) the nested host's C tools
 * use, spelled out so they build against any libc headers, plus the two
 * DMA calls every tool makes. Shared by the C tools in nested-host/tools
 * (L1) and guest/tools (L2); both build scripts add this directory to -I.
 */
#ifndef MINIVMM_VFIO_UAPI_H
#define MINIVMM_VFIO_UAPI_H

#include <stdint.h>
#include <sys/ioctl.h>

#define VIO(nr) (((unsigned long)';' << 8) | (100 + (nr)))
#define GET_API_VERSION VIO(0)
#define CHECK_EXTENSION VIO(1)
#define SET_IOMMU VIO(2)
#define GROUP_GET_STATUS VIO(3)
#define GROUP_SET_CONTAINER VIO(4)
#define GROUP_GET_DEVICE_FD VIO(6)
#define DEVICE_GET_INFO VIO(7)
#define DEVICE_GET_REGION_INFO VIO(8)
#define DEVICE_SET_IRQS VIO(10)
#define IOMMU_GET_INFO VIO(12)
#define IOMMU_MAP_DMA VIO(13)
#define IOMMU_UNMAP_DMA VIO(14)

#define TYPE1v2_IOMMU 3
#define GROUP_FLAGS_VIABLE 1u
#define IOMMU_INFO_PGSIZES 1u
#define IOMMU_INFO_CAPS 2u
#define CAP_IOVA_RANGE 1
#define CAP_DMA_AVAIL 3
#define DMA_READ_WRITE 3u
#define CONFIG_REGION_INDEX 7
#define MSI_IRQ_INDEX 1
#define IRQ_SET_DATA_EVENTFD (1u << 2)
#define IRQ_SET_ACTION_TRIGGER (1u << 5)

struct group_status { uint32_t argsz, flags; };
struct iommu_info { uint32_t argsz, flags; uint64_t pgsizes; uint32_t cap_offset, pad; };
struct cap_header { uint16_t id, version; uint32_t next; };
struct device_info { uint32_t argsz, flags, num_regions, num_irqs, cap_offset, pad; };
struct region_info { uint32_t argsz, flags, index, cap_offset; uint64_t size, offset; };
struct irq_set { uint32_t argsz, flags, index, start, count; int32_t fd; };
struct dma_map { uint32_t argsz, flags; uint64_t vaddr, iova, size; };
struct dma_unmap { uint32_t argsz, flags; uint64_t iova, size; };

/* Maps SIZE bytes at BUF read-write at IOVA in CONTAINER. */
static inline int vfio_map(int container, void *buf, uint64_t iova, uint64_t size)
{
    struct dma_map m = {
        .argsz = sizeof(m), .flags = DMA_READ_WRITE, .vaddr = (uint64_t)(uintptr_t)buf,
        .iova = iova, .size = size,
    };
    return ioctl(container, IOMMU_MAP_DMA, &m);
}

/* Unmaps IOVA..+SIZE; stores what the kernel says it unmapped in *DONE. */
static inline int vfio_unmap(int container, uint64_t iova, uint64_t size, uint64_t *done)
{
    struct dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };
    int ret = ioctl(container, IOMMU_UNMAP_DMA, &u);
    if (done)
        *done = u.size;
    return ret;
}

#endif
