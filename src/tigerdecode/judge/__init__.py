"""The whole-answer judge: its model, the re-encoding features, and the rewind-and-rewrite."""
