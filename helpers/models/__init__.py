"""The candidate networks: build by name, load ImageNet weights, normalise inputs, run a model over images."""
