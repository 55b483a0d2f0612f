//! virtio-iommu device (virtio 1.3 section 5.13).
