"""Building the specially labelled data and training the control heads and the judge."""
