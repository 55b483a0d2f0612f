//! Queue-level tests of the virtio-iommu device.
