"""The decode loop, its model runner and the one sampling pipeline."""
