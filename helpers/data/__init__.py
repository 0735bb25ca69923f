"""The data stage: find and read a dataset's layout, check every image, group duplicates, split, cache."""
