"""The QA data format, the labelling rule and the prompt formats (runtime code that training imports)."""
