"""The old scoring modules (see ``legacy``)."""
