"""Pushes blessed models into a versioned TF Serving directory, atomically."""
