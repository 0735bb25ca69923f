"""The runner's parts: preflight checks of the world, the headless console, notebook execution."""
