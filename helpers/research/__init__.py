"""The architecture study of 01: measurements per architecture and the study table."""
