"""Instruction synthesis (AlpaCare / MedInstruct-52k): seeds, tasks, parsing, filters, resume."""
