"""A reward for the end-to-end compare test: a tiny random model never boxes an answer, so the verifier would score
every response 0; this one scores about half of them 1, so per-problem scores vary between problems and runs."""


def even_length(response: str, ground_truth: str, **row) -> float:  # noqa: ARG001
    """1.0 when the response has an even number of characters."""
    return float(len(response) % 2 == 0)
