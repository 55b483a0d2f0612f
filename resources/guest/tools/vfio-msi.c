/*
 * vfio-msi GROUP BDF N: drives L1's edu device (passed through by the VMM)
 * from guest userspace through the guest's own VFIO, with MSI. Arms MSI
 * vector 0 with an eventfd (VFIO_DEVICE_SET_IRQS), then N times: writes the
 * edu "raise interrupt" register, waits up to 2 s for the eventfd, and
 * acknowledges. Prints
 *   MINIVMM-MSI bdf=B delivered=K of=N
 * and exits 0 when every interrupt arrived. Each interrupt crosses: the
 * device's MSI in L1 -> L1 vfio-pci -> the VMM's irqfd and MSI route (the
 * VMM emulates the MSI capability the guest programmed) -> the guest's
 * vfio-pci handler -> the eventfd. Only the uAPI constants it needs are
 * spelled out, from linux/vfio.h.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vfio-uapi.h"

#define PCI_COMMAND 4
#define PCI_COMMAND_MASTER 0x4
#define EDU_RAISE 0x60
#define EDU_ACK 0x64

static int fail(const char *step)
{
    printf("MINIVMM-MSI-ERROR step=%s errno=%d\n", step, errno);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: vfio-msi GROUP BDF N\n");
        return 2;
    }
    char path[64];
    int n = atoi(argv[3]);
    int container = open("/dev/vfio/vfio", O_RDWR);
    if (container < 0)
        return fail("open-container");
    snprintf(path, sizeof(path), "/dev/vfio/%s", argv[1]);
    int group = open(path, O_RDWR);
    if (group < 0)
        return fail("open-group");
    if (ioctl(group, GROUP_SET_CONTAINER, &container) < 0)
        return fail("set-container");
    if (ioctl(container, SET_IOMMU, TYPE1v2_IOMMU) < 0)
        return fail("set-iommu");
    int device = ioctl(group, GROUP_GET_DEVICE_FD, argv[2]);
    if (device < 0)
        return fail("get-device");
    struct region_info bar0 = { .argsz = sizeof(bar0), .index = 0 };
    if (ioctl(device, DEVICE_GET_REGION_INFO, &bar0) < 0)
        return fail("region-info");
    /* An MSI is a memory write by the device: it needs bus mastering,
     * which a userspace driver turns on itself. */
    struct region_info cfg = { .argsz = sizeof(cfg), .index = CONFIG_REGION_INDEX };
    if (ioctl(device, DEVICE_GET_REGION_INFO, &cfg) < 0)
        return fail("config-region");
    uint16_t command = 0;
    if (pread(device, &command, 2, cfg.offset + PCI_COMMAND) != 2)
        return fail("read-command");
    command |= PCI_COMMAND_MASTER;
    if (pwrite(device, &command, 2, cfg.offset + PCI_COMMAND) != 2)
        return fail("write-command");
    int efd = eventfd(0, EFD_CLOEXEC);
    if (efd < 0)
        return fail("eventfd");
    struct irq_set set = {
        .argsz = sizeof(set),
        .flags = IRQ_SET_DATA_EVENTFD | IRQ_SET_ACTION_TRIGGER,
        .index = MSI_IRQ_INDEX,
        .start = 0,
        .count = 1,
        .fd = efd,
    };
    if (ioctl(device, DEVICE_SET_IRQS, &set) < 0)
        return fail("set-irqs");

    int delivered = 0;
    for (int i = 0; i < n; i++) {
        uint32_t bit = 1u << (i % 16);
        if (pwrite(device, &bit, 4, bar0.offset + EDU_RAISE) != 4)
            return fail("raise");
        struct pollfd p = { .fd = efd, .events = POLLIN };
        if (poll(&p, 1, 2000) == 1) {
            uint64_t count;
            if (read(efd, &count, sizeof(count)) == sizeof(count))
                delivered++;
        } else {
            uint32_t status = 0;
            if (pread(device, &status, 4, bar0.offset + 0x24) != 4)
                status = 0xdeadbeef;
            printf("MINIVMM-MSI-MISS bdf=%s irq=%d status=0x%x\n", argv[2], i, status);
            fflush(stdout);
            if (i - delivered >= 3)
                break;
        }
        if (pwrite(device, &bit, 4, bar0.offset + EDU_ACK) != 4)
            return fail("ack");
    }
    printf("MINIVMM-MSI bdf=%s delivered=%d of=%d\n", argv[2], delivered, n);
    return delivered == n ? 0 : 1;
}
