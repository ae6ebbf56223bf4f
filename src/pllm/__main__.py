"""`python -m pllm`: the same as the `pllm` console script."""

from pllm.cli import main

main()
