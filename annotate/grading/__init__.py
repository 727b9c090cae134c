"""The annotators' work: the queue and its pairs, their history, the grading pages and API."""
