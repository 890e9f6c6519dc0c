"""LINGO: adapt natural-language models to genome understanding."""
