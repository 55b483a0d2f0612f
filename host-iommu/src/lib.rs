//! Host IOMMU constraints.
