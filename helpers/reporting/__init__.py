"""The write-up: REPORT.md section by section, the runs' index, figures, the ru/en texts."""
