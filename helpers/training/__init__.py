"""Fine-tuning: the cycle, the epoch loop, optimiser and schedule, frozen layers, checkpoints, ledger, DDP, tracking."""
