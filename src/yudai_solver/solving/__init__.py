"""The solve lifecycle: start, status, cancel, matrix, ranking and the reducer that ends a solve."""
