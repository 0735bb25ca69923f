"""Configuration: the one parameter schema and its pure value checks (`python -m helpers.params` prints its table)."""
